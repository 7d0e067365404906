// Command introspect-node runs ONE go-libp2p host per process (go-libp2p's native metric
// collectors are package-level, so one host per process keeps them this host's), optionally with
// kad-dht, introspected with package introspect (installed at construction: wire open times,
// stream ends, bandwidth) and serving go-libp2p's own Prometheus metrics from a fresh registry.
//
// On 127.0.0.1 (its own HTTP server, -http):
//
//	/metrics   go-libp2p's own metrics (libp2p.PrometheusRegisterer), libp2p_rcmgr_* included
//	/dht       {"routing_table_size": N} from kad-dht's RoutingTable().Size() (kad-dht exports none)
//	/runtime   the process's CPU time (getrusage) and Go allocation counters, for bench/go_host_cost
//	/conns     the host's open connections as the swarm lists them
//
// With -control, POST /control/{dial,close,streams,hold,release} drive it step by step (the e2e
// test's script). Flags -dial, -streams-every and -churn drive it on their own. When ready it prints
// one JSON line: {"peer_id", "addrs", "introspect", "metrics", "http"}. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	idht "github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/dht"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	listen       listFlag
	dial         listFlag
	protocols    string
	introspect   bool
	introAddr    string
	httpAddr     string
	dht          bool
	control      bool
	streamsEvery time.Duration
	churn        time.Duration
	connsHigh    int
	unlimited    bool
}

type node struct {
	o     options
	h     host.Host
	dht   *kaddht.IpfsDHT
	query *idht.DHT // dht with the host's own queries counted (nil without introspection)
	intro *introspect.Introspector
	reg   *prometheus.Registry
	srv   *http.Server
	ln    net.Listener

	mu   sync.Mutex
	held map[protocol.ID][]network.Stream
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("introspect-node: ")
	var o options
	flag.Var(&o.listen, "listen", "libp2p listen multiaddr (repeatable; default TCP and QUIC on 127.0.0.1, any port)")
	flag.Var(&o.dial, "dial", "multiaddr with /p2p/ID to dial at start and on churn (repeatable)")
	flag.StringVar(&o.protocols, "protocols", "/e2e/echo/1.0.0,/e2e/hold/1.0.0", "comma-separated protocols the host answers (echo until EOF)")
	flag.BoolVar(&o.introspect, "introspect", true, "serve introspection (false: the same host without the probe and endpoint)")
	flag.StringVar(&o.introAddr, "introspect-addr", "127.0.0.1:0", "introspection endpoint address")
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:0", "address of /metrics, /dht, /runtime, /conns (and /control)")
	flag.BoolVar(&o.dht, "dht", false, "run kad-dht in server mode (bootstrapped against the dialled peers)")
	flag.BoolVar(&o.control, "control", false, "accept POST /control/... commands on the HTTP server (tests)")
	flag.DurationVar(&o.streamsEvery, "streams-every", 0, "open, use and close one stream per protocol to every connected peer this often (0: never)")
	flag.DurationVar(&o.churn, "churn", 0, "close a random connection and redial a -dial peer this often (0: never)")
	flag.IntVar(&o.connsHigh, "conns-high", 0, "connection manager high water (low = 90%); 0: go-libp2p's default 160/192")
	flag.BoolVar(&o.unlimited, "unlimited", false, "raise the resource manager's system and transient connection, stream and fd limits to unlimited")
	flag.Parse()
	if err := check(o); err != nil {
		fmt.Fprintln(os.Stderr, "introspect-node:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func check(o options) error {
	for _, a := range append(slices.Clone(o.listen), o.dial...) {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("%q: %v", a, err)
		}
	}
	for _, a := range o.dial {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			return fmt.Errorf("-dial %q: %v (want /.../p2p/ID)", a, err)
		}
	}
	if o.streamsEvery < 0 || o.churn < 0 || o.connsHigh < 0 {
		return errors.New("-streams-every, -churn and -conns-high must not be negative")
	}
	return nil
}

func run(ctx context.Context, o options) error {
	nd, err := start(o)
	if err != nil {
		return err
	}
	defer nd.close()
	for _, a := range o.dial {
		if err := nd.dialAddr(ctx, a); err != nil {
			log.Printf("dial %s: %v", a, err)
		}
	}
	if nd.dht != nil {
		_ = nd.dht.Bootstrap(ctx)
	}
	ready := map[string]any{
		"peer_id":    nd.h.ID().String(),
		"addrs":      nd.fullAddrs(),
		"introspect": "",
		"http":       "http://" + nd.ln.Addr().String(),
		"metrics":    "http://" + nd.ln.Addr().String() + "/metrics",
	}
	if nd.intro != nil {
		ready["introspect"] = nd.intro.URL()
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line))
	if o.streamsEvery > 0 {
		go nd.streamsLoop(ctx)
	}
	if o.churn > 0 && len(o.dial) > 0 {
		go nd.churnLoop(ctx)
	}
	<-ctx.Done()
	return nil
}

func (o options) protocolIDs() []protocol.ID {
	var out []protocol.ID
	for _, p := range strings.Split(o.protocols, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, protocol.ID(p))
		}
	}
	return out
}

// resourceManager is go-libp2p's default (rcmgr.DefaultLimits with its service limits, auto-scaled),
// optionally with the system and transient scopes' connection, stream and fd limits raised, and
// reporting to go-libp2p's own rcmgr metrics (libp2p.New registers them; a manager given to it
// only reports with a StatsTraceReporter).
func resourceManager(unlimited bool) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	concrete := limits.AutoScale()
	if unlimited {
		raised := rcmgr.ResourceLimits{
			Conns: rcmgr.Unlimited, ConnsInbound: rcmgr.Unlimited, ConnsOutbound: rcmgr.Unlimited,
			Streams: rcmgr.Unlimited, StreamsInbound: rcmgr.Unlimited, StreamsOutbound: rcmgr.Unlimited,
			FD: rcmgr.Unlimited,
		}
		concrete = rcmgr.PartialLimitConfig{System: raised, Transient: raised}.Build(concrete)
	}
	str, err := rcmgr.NewStatsTraceReporter()
	if err != nil {
		return nil, err
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(concrete), rcmgr.WithTraceReporter(str))
}

func start(o options) (*node, error) {
	listen := o.listen
	if len(listen) == 0 {
		listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	rm, err := resourceManager(o.unlimited)
	if err != nil {
		return nil, err
	}
	nd := &node{o: o, reg: prometheus.NewRegistry(), held: map[protocol.ID][]network.Stream{}}
	opts := []libp2p.Option{
		libp2p.ListenAddrStrings(listen...),
		libp2p.PrometheusRegisterer(nd.reg),
	}
	if o.connsHigh > 0 {
		cm, err := connmgr.NewConnManager(o.connsHigh*9/10, o.connsHigh)
		if err != nil {
			return nil, err
		}
		opts = append(opts, libp2p.ConnectionManager(cm))
	}
	var probe *introspect.Probe
	if o.introspect {
		if probe, err = introspect.NewProbe(introspect.WrapResourceManager(rm)); err != nil {
			return nil, err
		}
		opts = append(opts, probe.Option())
	} else {
		opts = append(opts, libp2p.ResourceManager(rm))
	}
	if nd.h, err = libp2p.New(opts...); err != nil {
		return nil, err
	}
	for _, p := range o.protocolIDs() {
		nd.h.SetStreamHandler(p, echo)
	}
	var tracker *idht.Tracker
	if o.dht {
		dopts := []kaddht.Option{kaddht.Mode(kaddht.ModeServer)}
		if o.introspect {
			tracker = idht.NewTracker()
			dopts = append(dopts, tracker.Option())
		}
		if nd.dht, err = kaddht.New(nd.h, dopts...); err != nil {
			nd.close()
			return nil, fmt.Errorf("kad-dht: %w", err)
		}
		if tracker != nil {
			nd.query = tracker.Wrap(nd.dht)
		}
	}
	if o.introspect {
		iopts := []introspect.Option{introspect.WithProbe(probe), introspect.ListenAddr(o.introAddr)}
		if tracker != nil {
			iopts = append(iopts, introspect.WithProvider(tracker))
		}
		if nd.intro, err = introspect.New(nd.h, iopts...); err != nil {
			nd.close()
			return nil, err
		}
	}
	if err := nd.serve(o.httpAddr); err != nil {
		nd.close()
		return nil, err
	}
	return nd, nil
}

func (nd *node) close() {
	if nd.srv != nil {
		_ = nd.srv.Close()
	}
	if nd.intro != nil {
		_ = nd.intro.Close()
	}
	if nd.dht != nil {
		_ = nd.dht.Close()
	}
	_ = nd.h.Close()
}

// echo answers a stream: everything read is written back until EOF, then it closes.
func echo(s network.Stream) {
	_, _ = io.Copy(s, s)
	_ = s.Close()
}

func (nd *node) fullAddrs() []string {
	var out []string
	for _, a := range nd.h.Addrs() {
		out = append(out, a.String()+"/p2p/"+nd.h.ID().String())
	}
	return out
}

// dialAddr connects to the peer at addr over that address (the peer's other known addresses are
// forgotten first: the swarm would rank QUIC before TCP). With a connection to the peer already
// open, go-libp2p's swarm returns that one.
func (nd *node) dialAddr(ctx context.Context, addr string) error {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nd.h.Peerstore().ClearAddrs(ai.ID)
	nd.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
	_, err = nd.h.Network().DialPeer(ctx, ai.ID)
	return err
}

// exchange opens a stream on proto to p and sends and reads back one byte (the protocol is then
// negotiated on both sides).
func (nd *node) exchange(ctx context.Context, p peer.ID, proto protocol.ID) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := nd.h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	buf := []byte{1}
	if _, err = s.Write(buf); err == nil {
		_, err = io.ReadFull(s, buf)
	}
	if err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.SetDeadline(time.Time{})
	return s, nil
}

// finish closes s the polite way: our write side, then wait for the echo side's EOF.
func finish(s network.Stream) {
	_ = s.CloseWrite()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, s)
	_ = s.Close()
}

// every runs fn once per tick of d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func (nd *node) streamsLoop(ctx context.Context) {
	every(ctx, nd.o.streamsEvery, func() {
		for _, p := range nd.h.Network().Peers() {
			for _, proto := range nd.o.protocolIDs() {
				if s, err := nd.exchange(ctx, p, proto); err == nil {
					finish(s)
				}
			}
		}
	})
}

func (nd *node) churnLoop(ctx context.Context) {
	every(ctx, nd.o.churn, func() {
		if conns := nd.h.Network().Conns(); len(conns) > 0 {
			_ = conns[rand.IntN(len(conns))].Close()
		}
		a := nd.o.dial[rand.IntN(len(nd.o.dial))]
		if err := nd.dialAddr(ctx, a); err != nil && ctx.Err() == nil {
			log.Printf("redial %s: %v", a, err)
		}
	})
}

func (nd *node) serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	nd.ln = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(nd.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /dht", func(w http.ResponseWriter, _ *http.Request) {
		if nd.dht == nil {
			http.Error(w, "kad-dht is off (-dht)", http.StatusNotFound)
			return
		}
		reply(w, map[string]any{"routing_table_size": nd.dht.RoutingTable().Size()})
	})
	mux.HandleFunc("GET /runtime", func(w http.ResponseWriter, _ *http.Request) { reply(w, usage()) })
	mux.HandleFunc("GET /conns", func(w http.ResponseWriter, _ *http.Request) { reply(w, nd.conns()) })
	if nd.o.control {
		mux.HandleFunc("POST /control/{cmd}", nd.controlHandler)
	}
	nd.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = nd.srv.Serve(ln) }()
	return nil
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// usage is the process's CPU time and the Go runtime's allocation counters.
func usage() map[string]any {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return map[string]any{
		"cpu_user_seconds":   time.Duration(ru.Utime.Nano()).Seconds(),
		"cpu_system_seconds": time.Duration(ru.Stime.Nano()).Seconds(),
		"mallocs":            m.Mallocs,
		"total_alloc_bytes":  m.TotalAlloc,
		"heap_inuse_bytes":   m.HeapInuse,
		"gc_cycles":          m.NumGC,
		"goroutines":         runtime.NumGoroutine(),
	}
}

func (nd *node) conns() []map[string]any {
	out := []map[string]any{}
	for _, c := range nd.h.Network().Conns() {
		out = append(out, map[string]any{
			"peer":      c.RemotePeer().String(),
			"dir":       c.Stat().Direction.String(),
			"transport": c.ConnState().Transport,
			"streams":   len(c.GetStreams()),
		})
	}
	return out
}

// controlHandler runs one command and answers when it is done:
//
//	dial?addr=MA                    connect over that address
//	close?peer=ID                   close every connection to the peer
//	streams?peer=ID&protocol=P&n=N  N streams opened, used and closed
//	hold?peer=ID&protocol=P&n=N     N streams opened, used and kept open
//	release?protocol=P              close the held streams on P
//	query?peer=ID                   a kad-dht FindPeer and GetClosestPeers for ID (counted by the tracker)
func (nd *node) controlHandler(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	n := 1
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 10000 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
	}
	var p peer.ID
	if v := q.Get("peer"); v != "" {
		var err error
		if p, err = peer.Decode(v); err != nil {
			http.Error(w, "bad peer: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	proto := protocol.ID(q.Get("protocol"))
	var err error
	switch r.PathValue("cmd") {
	case "dial":
		err = nd.dialAddr(ctx, q.Get("addr"))
	case "close":
		err = nd.h.Network().ClosePeer(p)
	case "streams", "hold":
		keep := r.PathValue("cmd") == "hold"
		for range n {
			var s network.Stream
			if s, err = nd.exchange(ctx, p, proto); err != nil {
				break
			}
			if keep {
				nd.mu.Lock()
				nd.held[proto] = append(nd.held[proto], s)
				nd.mu.Unlock()
			} else {
				finish(s)
			}
		}
	case "release":
		nd.mu.Lock()
		held := nd.held[proto]
		delete(nd.held, proto)
		nd.mu.Unlock()
		for _, s := range held {
			finish(s)
		}
	case "query":
		if nd.query == nil {
			http.Error(w, "no kad-dht with introspection (-dht)", http.StatusNotFound)
			return
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = nd.query.FindPeer(qctx, p)
		if err == nil {
			_, err = nd.query.GetClosestPeers(qctx, string(p))
		}
		cancel()
	default:
		http.Error(w, "unknown command", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	reply(w, map[string]any{"ok": true, "conns": len(nd.h.Network().Conns())})
}
