// Command introspect-swarm runs N go-libp2p hosts on loopback, each with kad-dht (server mode,
// bootstrapped against the others), gossipsub on one topic with periodic publishes and churn
// (connections closed and redialled), and each serving introspection. When every host is ready it
// prints one line per host, NAME=ws://127.0.0.1:PORT/introspect, and with -config-out writes a
// libp2p-exporter configuration listing them. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	idht "github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/dht"
	ipubsub "github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/pubsub"
)

type options struct {
	n         int
	churn     time.Duration
	duration  time.Duration
	listen    int
	publish   time.Duration
	topic     string
	configOut string
	prefix    string
}

type node struct {
	name   string
	h      host.Host
	dht    *idht.DHT
	topic  *pubsub.Topic
	intro  *introspect.Introspector
	cancel context.CancelFunc
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("introspect-swarm: ")
	var o options
	flag.IntVar(&o.n, "n", 5, "number of hosts")
	flag.DurationVar(&o.churn, "churn", 5*time.Second, "interval between churn steps (a connection closed, another redialled); 0 turns churn off")
	flag.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until SIGINT or SIGTERM)")
	flag.IntVar(&o.listen, "listen", 0, "introspection port of the first host, the others follow (0: any free port)")
	flag.DurationVar(&o.publish, "publish", time.Second, "interval between each host's gossipsub publishes")
	flag.StringVar(&o.topic, "topic", "introspect-demo", "gossipsub topic")
	flag.StringVar(&o.configOut, "config-out", "", "write a libp2p-exporter --config file listing the hosts here")
	flag.StringVar(&o.prefix, "name", "go", "host names are NAME-0, NAME-1, ...")
	flag.Parse()
	if err := check(o); err != nil {
		fmt.Fprintln(os.Stderr, "introspect-swarm:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	if err := run(ctx, o); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func check(o options) error {
	switch {
	case o.n < 1 || o.n > 200:
		return fmt.Errorf("-n %d: want 1 to 200 hosts", o.n)
	case o.churn < 0 || o.duration < 0:
		return errors.New("-churn and -duration must not be negative")
	case o.publish <= 0:
		return errors.New("-publish must be positive")
	case o.listen < 0 || o.listen+o.n-1 > 65535:
		return fmt.Errorf("-listen %d: the ports %d..%d do not exist", o.listen, o.listen, o.listen+o.n-1)
	}
	return nil
}

func run(ctx context.Context, o options) error {
	nodes := make([]*node, 0, o.n)
	defer func() {
		for _, nd := range nodes {
			nd.close()
		}
	}()
	for i := range o.n {
		addr := "127.0.0.1:0"
		if o.listen > 0 {
			addr = fmt.Sprintf("127.0.0.1:%d", o.listen+i)
		}
		nd, err := start(ctx, fmt.Sprintf("%s-%d", o.prefix, i), addr, o.topic)
		if err != nil {
			return err
		}
		nodes = append(nodes, nd)
	}
	// A ring plus a link to the first host: every routing table fills from its neighbours'.
	for i, nd := range nodes[1:] {
		connect(ctx, nd.h, nodes[0].h)
		connect(ctx, nd.h, nodes[i].h)
	}
	for _, nd := range nodes {
		_ = nd.dht.Bootstrap(ctx)
	}
	var lines []string
	for _, nd := range nodes {
		lines = append(lines, nd.name+"="+nd.intro.URL())
	}
	if o.configOut != "" {
		if err := writeConfig(o.configOut, nodes); err != nil {
			return err
		}
	}
	fmt.Println(strings.Join(lines, "\n"))
	for _, nd := range nodes {
		go nd.publishEvery(ctx, o.publish)
		go nd.queryEvery(ctx, nodes, 3*time.Second)
	}
	if o.churn > 0 && len(nodes) > 1 {
		go churn(ctx, nodes, o.churn)
	}
	<-ctx.Done()
	return nil
}

func start(ctx context.Context, name, introAddr, topic string) (*node, error) {
	probe, err := introspect.NewProbe()
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		probe.Option(),
		libp2p.DisableMetrics(), // go-libp2p's collectors are per process: N hosts would add up
	)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	nd := &node{name: name, h: h}
	ctx, nd.cancel = context.WithCancel(ctx)
	tracker := idht.NewTracker()
	d, err := kaddht.New(h, kaddht.Mode(kaddht.ModeServer), tracker.Option())
	if err != nil {
		nd.close()
		return nil, fmt.Errorf("%s: kad-dht: %w", name, err)
	}
	nd.dht = tracker.Wrap(d)
	pst := ipubsub.NewTracer()
	ps, err := pubsub.NewGossipSub(ctx, h, pst.Option())
	if err != nil {
		nd.close()
		return nil, fmt.Errorf("%s: gossipsub: %w", name, err)
	}
	if nd.topic, err = ps.Join(topic); err != nil {
		nd.close()
		return nil, err
	}
	sub, err := nd.topic.Subscribe()
	if err != nil {
		nd.close()
		return nil, err
	}
	go func() { // read what arrives so gossipsub does not drop for a slow subscriber
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
		}
	}()
	opts := []introspect.Option{
		introspect.WithProbe(probe), introspect.WithProvider(tracker), introspect.WithProvider(pst), introspect.ListenAddr(introAddr),
	}
	nd.intro, err = introspect.New(h, opts...)
	if err != nil {
		nd.close()
		return nil, fmt.Errorf("%s: introspection on %s: %w", name, introAddr, err)
	}
	return nd, nil
}

func (nd *node) close() {
	if nd.intro != nil {
		_ = nd.intro.Close()
	}
	nd.cancel()
	if nd.dht != nil {
		_ = nd.dht.Close()
	}
	_ = nd.h.Close()
}

func connect(ctx context.Context, a, b host.Host) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil && ctx.Err() == nil {
		log.Printf("connect: %v", err)
	}
}

func (nd *node) publishEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = nd.topic.Publish(ctx, fmt.Appendf(nil, "%s %d", nd.name, seq))
		}
	}
}

// queryEvery makes the host's own DHT queries (counted by its tracker): a peer lookup of
// another host and a closest-peers walk.
func (nd *node) queryEvery(ctx context.Context, nodes []*node, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			other := nodes[rand.IntN(len(nodes))]
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = nd.dht.FindPeer(qctx, other.h.ID())
			_, _ = nd.dht.GetClosestPeers(qctx, string(other.h.ID()))
			cancel()
		}
	}
}

// churn closes a random connection and redials a random pair, one step per interval.
func churn(ctx context.Context, nodes []*node, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a := nodes[rand.IntN(len(nodes))]
		if conns := a.h.Network().Conns(); len(conns) > 0 {
			_ = conns[rand.IntN(len(conns))].Close()
		}
		b, c := nodes[rand.IntN(len(nodes))], nodes[rand.IntN(len(nodes))]
		if b != c {
			connect(ctx, b.h, c.h)
		}
	}
}

// writeConfig writes the exporter's configuration (docs/live.md) at once: a reader never sees
// half a file.
func writeConfig(path string, nodes []*node) error {
	var b strings.Builder
	b.WriteString("# introspect-swarm: one target per go-libp2p host\ntargets:\n")
	for _, nd := range nodes {
		fmt.Fprintf(&b, "  - url: %s\n    name: %s\n", nd.intro.URL(), nd.name)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".introspect-swarm-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
