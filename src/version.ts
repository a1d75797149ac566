/** The etcd version this server reports (an etcd 3.5 release, which clients accept). */
export const SERVER_VERSION = '3.5.17';
/** The cluster version it reports (etcd `/version` "etcdcluster"). */
export const CLUSTER_VERSION = '3.5.0';
