// The outage a Go clientv3 client sees when the server is killed (-9) under load and started
// again at once: for etcd-ts and etcd 3.4 alike, started by the same command line.
//
// usage: restart-outage -port P -data-dir D [-load-keys N -load-leases L] [-cycles K] -- CMD ARGS…
//
// CMD ARGS must start a server on D with its client URL http://127.0.0.1:P. The data dir is
// loaded first when it does not exist (N keys of 100 bytes written twice, then L leases of a
// day with 4 keys each). Then `-clients` goroutines put and get random keys, and every
// `-period` the server is killed with SIGKILL, reaped and exec'd again. Per cycle it prints,
// from the new process's exec: when the client port is listening (polled in /proc/net/tcp, so
// the probe makes no connection), when the server wrote "ready to serve client requests", when
// the load's first call succeeded, and the gap the load saw: from its last success before the
// kill to its first after. With `-clients 0` there is no load, only the first two columns.
//
// clientv3 (grpc-go 1.33) dials again at once when its connection breaks, then after 1 s, then
// after 1.6 s more (±20%), and so on: a server not listening 1 s after the kill costs its
// clients at least another 1.3 s.
//
// Built in GOPATH mode against Debian's golang-etcd-server-dev, as the clientv3 fixture:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o /tmp/restart-outage ./bench/restart-outage
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.uber.org/zap"
)

var (
	port       = flag.Int("port", 0, "the server's client port")
	dataDir    = flag.String("data-dir", "", "the server's data dir")
	loadKeys   = flag.Int("load-keys", 100000, "keys written to a new data dir")
	loadLeases = flag.Int("load-leases", 3000, "leases granted in a new data dir, 4 keys each")
	cycles     = flag.Int("cycles", 3, "kill -9 and restart cycles")
	clients    = flag.Int("clients", 16, "goroutines putting and getting")
	period     = flag.Duration("period", 5*time.Second, "load between restarts")
	hogs       = flag.Int("hogs", 0, "busy-looping goroutines beside the load (a loaded machine)")
)

// start is the time this program started: every time printed is in ms from an exec.
var start = time.Now()

func now() int64 { return int64(time.Since(start)) }

// server is the running server process and what its stderr said.
type server struct {
	cmd   *exec.Cmd
	exec  int64
	ready atomic.Int64
}

func launch(argv []string) *server {
	s := &server{cmd: exec.Command(argv[0], argv[1:]...)}
	stderr, err := s.cmd.StderrPipe()
	check(err)
	s.cmd.Stdout = os.Stdout
	s.exec = now()
	check(s.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if s.ready.Load() == 0 && strings.Contains(sc.Text(), "ready to serve client requests") {
				s.ready.Store(now())
			}
		}
	}()
	return s
}

// listening polls /proc/net/tcp{,6} until a socket listens on the port; returns when.
func listening(deadline time.Duration) int64 {
	suffix := fmt.Sprintf(":%04X", *port)
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				fields := strings.Fields(line)
				if len(fields) > 3 && strings.HasSuffix(fields[1], suffix) && fields[3] == "0A" {
					return now()
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	return -1
}

// quiet is the client's log set to errors only: its retry warnings during each outage are expected.
func quiet() *zap.Config {
	c := zap.NewProductionConfig()
	c.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	return &c
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func key(i int) string { return fmt.Sprintf("/registry/k/%07d", i) }

var value = strings.Repeat("v", 100)

func load(cli *clientv3.Client) {
	ctx := context.Background()
	var wg sync.WaitGroup
	work := make(chan func(), 64)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f()
			}
		}()
	}
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < *loadKeys; i += 100 {
			i := i
			work <- func() {
				ops := []clientv3.Op{}
				for j := i; j < i+100 && j < *loadKeys; j++ {
					ops = append(ops, clientv3.OpPut(key(j), value))
				}
				_, err := cli.Txn(ctx).Then(ops...).Commit()
				check(err)
			}
		}
	}
	for l := 0; l < *loadLeases; l++ {
		l := l
		work <- func() {
			lease, err := cli.Grant(ctx, 86400)
			check(err)
			for j := 0; j < 4; j++ {
				_, err := cli.Put(ctx, fmt.Sprintf("/registry/leased/%05d/%d", l, j), value, clientv3.WithLease(lease.ID))
				check(err)
			}
		}
	}
	close(work)
	wg.Wait()
}

func main() {
	flag.Parse()
	argv := flag.Args()
	if *port == 0 || *dataDir == "" || len(argv) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	fresh := false
	if _, err := os.Stat(*dataDir); os.IsNotExist(err) {
		fresh = true
	}
	for h := 0; h < *hogs; h++ {
		go func() {
			for x := 0; ; x++ {
				if x%1000000 == 0 {
					time.Sleep(0)
				}
			}
		}()
	}
	srv := launch(argv)
	defer func() { _ = srv.cmd.Process.Kill(); _, _ = srv.cmd.Process.Wait() }()
	endpoint := fmt.Sprintf("127.0.0.1:%d", *port)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 20 * time.Second, LogConfig: quiet()})
	check(err)
	if fresh {
		t := time.Now()
		load(cli)
		fmt.Printf("loaded %d keys twice and %d leases in %v\n", *loadKeys, *loadLeases, time.Since(t).Round(time.Millisecond))
	}

	// The load: the last success, and the first success after the restart's exec.
	var lastSuccess, firstAfter, restartedAt atomic.Int64
	for c := 0; c < *clients; c++ {
		go func(c int) {
			r := rand.New(rand.NewSource(int64(c)))
			for i := 0; ; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				var err error
				if i%2 == 0 {
					_, err = cli.Put(ctx, key(r.Intn(*loadKeys)), value)
				} else {
					_, err = cli.Get(ctx, key(r.Intn(*loadKeys)))
				}
				cancel()
				if err != nil {
					continue
				}
				t := now()
				lastSuccess.Store(t)
				if r := restartedAt.Load(); r != 0 && t > r {
					firstAfter.CompareAndSwap(0, t)
				}
			}
		}(c)
	}

	ms := func(d int64) string { return fmt.Sprintf("%6.0f", float64(d)/1e6) }
	fmt.Println("cycle  listen   ready   first     gap  (ms from exec; gap from the last success before the kill)")
	for cycle := 1; cycle <= *cycles; cycle++ {
		time.Sleep(*period)
		check(srv.cmd.Process.Signal(syscall.SIGKILL))
		_, _ = srv.cmd.Process.Wait()
		before := lastSuccess.Load()
		firstAfter.Store(0)
		srv = launch(argv)
		// Completions read right after the kill were answered by the old process.
		restartedAt.Store(srv.exec + int64(5*time.Millisecond))
		l := listening(30 * time.Second)
		for *clients > 0 && firstAfter.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		for srv.ready.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		if *clients == 0 {
			fmt.Printf("%5d %s  %s\n", cycle, ms(l-srv.exec), ms(srv.ready.Load()-srv.exec))
		} else {
			first := firstAfter.Load()
			fmt.Printf("%5d %s  %s  %s  %s\n", cycle, ms(l-srv.exec), ms(srv.ready.Load()-srv.exec), ms(first-srv.exec), ms(first-before))
		}
		restartedAt.Store(0)
	}
}
