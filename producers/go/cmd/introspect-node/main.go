// Command introspect-node runs one go-libp2p host in its own process, serving introspection and
// go-libp2p's own Prometheus metrics, so that the two can be compared for the same host
// (go-libp2p's collectors are per process). The end-to-end test drives it over stdin.
//
// When ready it prints one JSON line: {"peer", "intro" (ws URL), "metrics" (http URL of /metrics;
// /dht on the same server answers {"routing_table_size": N} from kad-dht's RoutingTable().Size()),
// "addrs" (full multiaddrs with /p2p/)}. Commands, one per line; each is answered "ok" or "error: …":
//
//	connect MADDR        dial the peer in MADDR (ending in /p2p/ID) over that address
//	disconnect PEER      close every connection to PEER
//	ping PEER N          hold N ping streams (/ipfs/ping/1.0.0) open to PEER
//	unping               end the held ping streams
//	quit                 exit (as SIGINT or SIGTERM do)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	idht "github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/dht"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("introspect-node: ")
	introAddr := flag.String("intro", "127.0.0.1:0", "introspection endpoint address")
	metricsAddr := flag.String("metrics", "127.0.0.1:0", "address of the HTTP server for /metrics and /dht")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, stop, *introAddr, *metricsAddr); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stop func(), introAddr, metricsAddr string) error {
	reg := prometheus.NewRegistry()
	// go-libp2p's resource manager with its Prometheus reporter (libp2p_rcmgr_*), wrapped by the probe.
	str, err := rcmgr.NewStatsTraceReporter()
	if err != nil {
		return err
	}
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rcmgr.WithTraceReporter(str))
	if err != nil {
		return err
	}
	probe, err := introspect.NewProbe(introspect.WrapResourceManager(mgr))
	if err != nil {
		return err
	}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		probe.Option(),
		libp2p.PrometheusRegisterer(reg),
	)
	if err != nil {
		return err
	}
	defer h.Close()
	tracker := idht.NewTracker()
	d, err := kaddht.New(h, kaddht.Mode(kaddht.ModeServer), tracker.Option())
	if err != nil {
		return err
	}
	defer d.Close()
	tracker.Wrap(d)
	in, err := introspect.New(h, introspect.WithProbe(probe), introspect.WithProvider(tracker), introspect.ListenAddr(introAddr))
	if err != nil {
		return err
	}
	defer in.Close()

	ln, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/dht", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"routing_table_size": d.RoutingTable().Size()})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	addrs := []string{}
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String()+"/p2p/"+h.ID().String())
	}
	ready, _ := json.Marshal(map[string]any{
		"peer": h.ID().String(), "intro": in.URL(), "metrics": "http://" + ln.Addr().String() + "/metrics", "addrs": addrs,
	})
	fmt.Println(string(ready))

	n := &node{h: h, ctx: ctx}
	defer n.unping()
	go n.commands(stop)
	<-ctx.Done()
	return nil
}

type node struct {
	h   host.Host
	ctx context.Context

	mu    sync.Mutex
	pings []context.CancelFunc
}

func (n *node) commands(stop func()) {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if err := n.do(strings.Fields(sc.Text()), stop); err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
	stop() // stdin closed: the test is gone
}

func (n *node) do(args []string, stop func()) error {
	if len(args) == 0 {
		return errors.New("empty command")
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	switch {
	case args[0] == "connect" && len(args) == 2:
		m, err := ma.NewMultiaddr(args[1])
		if err != nil {
			return err
		}
		info, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return err
		}
		return n.h.Connect(ctx, *info)
	case args[0] == "disconnect" && len(args) == 2:
		p, err := peer.Decode(args[1])
		if err != nil {
			return err
		}
		return n.h.Network().ClosePeer(p)
	case args[0] == "ping" && len(args) == 3:
		p, err := peer.Decode(args[1])
		if err != nil {
			return err
		}
		count, err := strconv.Atoi(args[2])
		if err != nil || count < 1 || count > 100 {
			return fmt.Errorf("ping count %q: want 1 to 100", args[2])
		}
		for range count {
			pctx, pcancel := context.WithCancel(n.ctx)
			results := ping.Ping(pctx, n.h, p)
			if r := <-results; r.Error != nil { // the first result: the stream is open
				pcancel()
				return r.Error
			}
			go func() { // keep reading so the pinger goes on until unping
				for range results {
				}
			}()
			n.mu.Lock()
			n.pings = append(n.pings, pcancel)
			n.mu.Unlock()
		}
		return nil
	case args[0] == "unping" && len(args) == 1:
		n.unping()
		return nil
	case args[0] == "quit":
		stop()
		return nil
	}
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

func (n *node) unping() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.pings {
		c()
	}
	n.pings = nil
}
