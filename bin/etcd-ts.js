#!/usr/bin/env node
// The etcd-ts executable: same flags and ETCD_* variables as etcd. Runs the compiled server
// from dist/ (built by `npm ci` through the `prepare` script, or `npm run build`).
import { main } from '../dist/src/cli/etcd-ts.js';

main(process.argv.slice(2), process.env);
