// Fan-out with a client that does not decode events: how many events per second a server
// delivers when the server, not the client, is the limit.
//
// usage: raw-fanout -endpoint 127.0.0.1:P [-watchers 1000 -clients 16 -total 2000 -writers 16 -val 256]
//
// etcdbench's fanout mode (../shared/bench) receives through clientv3, which decodes every
// event and hands it through channels: on a 2-core host the load generator then takes more CPU
// per event than either server, and the ratio measured is the ratio of total CPU per event. A
// host with faster cores, or a client on another machine, leaves the server as the limit
// instead, where a server spreading its fan-out over several cores (etcd) gains over one that
// does not (ours). This client keeps the same load (watchers on one prefix, spread over
// `-clients` connections, one Watch stream each; `-writers` goroutines each putting `-total` /
// `-writers` values to its own key under the prefix, one at a time) but reads each
// WatchResponse as bytes and only counts its events (field 11) at the top level, so its CPU per
// event is a small fraction of clientv3's and the server's own throughput shows.
//
// It prints one line of name=value figures: events delivered, seconds from the first put to the
// last event, events per second, and responses per second (the server's batching). Exit 1 on a
// canceled watcher, an error, or fewer or more events than watchers × total.
//
// Built in GOPATH mode against Debian's golang-etcd-server-dev, as bench/restart-outage:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o /tmp/raw-fanout ./bench/raw-fanout
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
)

var (
	endpoint = flag.String("endpoint", "127.0.0.1:2379", "client endpoint")
	watchers = flag.Int("watchers", 1000, "watchers on the prefix, spread over the connections")
	clients  = flag.Int("clients", 16, "gRPC connections, one Watch stream each")
	total    = flag.Int("total", 2000, "puts in all")
	writers  = flag.Int("writers", 16, "concurrent writers, each on its own key")
	valSize  = flag.Int("val", 256, "value size in bytes")
	prefix   = flag.String("prefix", "/rawfanout/", "key prefix")
)

// rawCodec passes messages through as bytes: requests are marshalled by the caller, responses
// are not decoded.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                               { return "proto" }

// scan reads a WatchResponse's top-level fields: the number of events (field 11), and whether
// it is created (3) or canceled (4).
func scan(b []byte) (events int, created, canceled bool, err error) {
	for i := 0; i < len(b); {
		tag, n := uvarint(b[i:])
		if n == 0 {
			return 0, false, false, fmt.Errorf("bad tag at %d", i)
		}
		i += n
		field, wire := tag>>3, tag&7
		switch wire {
		case 0:
			v, n := uvarint(b[i:])
			if n == 0 {
				return 0, false, false, fmt.Errorf("bad varint at %d", i)
			}
			i += n
			if field == 3 && v != 0 {
				created = true
			}
			if field == 4 && v != 0 {
				canceled = true
			}
		case 2:
			l, n := uvarint(b[i:])
			if n == 0 || i+n+int(l) > len(b) {
				return 0, false, false, fmt.Errorf("bad length at %d", i)
			}
			i += n + int(l)
			if field == 11 {
				events++
			}
		default:
			return 0, false, false, fmt.Errorf("wire type %d at %d", wire, i)
		}
	}
	return events, created, canceled, nil
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		if i == 10 {
			return 0, 0
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "raw-fanout: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	flag.Parse()
	ctx := context.Background()
	conns := make([]*grpc.ClientConn, *clients)
	for i := range conns {
		c, err := grpc.Dial(*endpoint, grpc.WithInsecure(), grpc.WithBlock(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			fail("dial: %v", err)
		}
		conns[i] = c
	}
	create, err := (&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte(*prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(*prefix)),
	}}}).Marshal()
	if err != nil {
		fail("marshal: %v", err)
	}
	want := int64(*watchers) * int64(*total)
	var delivered, responses int64
	done := make(chan struct{})
	var ready sync.WaitGroup
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true, ClientStreams: true}
	for s := 0; s < *clients; s++ {
		n := *watchers / *clients
		if s < *watchers%*clients {
			n++
		}
		if n == 0 {
			continue
		}
		st, err := conns[s].NewStream(ctx, desc, "/etcdserverpb.Watch/Watch", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			fail("watch: %v", err)
		}
		for i := 0; i < n; i++ {
			if err := st.SendMsg(create); err != nil {
				fail("create: %v", err)
			}
		}
		ready.Add(1)
		go func(st grpc.ClientStream, n int) {
			createdSeen := 0
			for {
				var b []byte
				if err := st.RecvMsg(&b); err != nil {
					fail("recv: %v", err)
				}
				events, created, canceled, err := scan(b)
				if err != nil {
					fail("response: %v", err)
				}
				if canceled {
					fail("a watcher was canceled")
				}
				if created {
					if createdSeen++; createdSeen == n {
						ready.Done()
					}
					continue
				}
				atomic.AddInt64(&responses, 1)
				got := atomic.AddInt64(&delivered, int64(events))
				if got == want {
					close(done)
				} else if got > want {
					fail("%d events delivered, %d expected", got, want)
				}
			}
		}(st, n)
	}
	ready.Wait()

	value := make([]byte, *valSize)
	for i := range value {
		value[i] = 'x'
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *writers; w++ {
		puts := *total / *writers
		if w < *total%*writers {
			puts++
		}
		wg.Add(1)
		go func(w, puts int) {
			defer wg.Done()
			kv := pb.NewKVClient(conns[w%len(conns)])
			key := []byte(fmt.Sprintf("%swriter-%d", *prefix, w))
			for i := 0; i < puts; i++ {
				if _, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: value}); err != nil {
					fail("put: %v", err)
				}
			}
		}(w, puts)
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		fail("timed out: %d of %d events", atomic.LoadInt64(&delivered), want)
	}
	secs := time.Since(start).Seconds()
	time.Sleep(100 * time.Millisecond) // any event past the count fails the run
	fmt.Printf("mode=raw-fanout watchers=%d events=%d delivered=%d secs=%.3f events_per_s=%.0f responses_per_s=%.0f\n",
		*watchers, *total, want, secs, float64(want)/secs, float64(atomic.LoadInt64(&responses))/secs)
}
