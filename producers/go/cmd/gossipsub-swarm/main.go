// Command gossipsub-swarm runs a small gossipsub swarm of go-libp2p hosts on loopback, every host
// tracing with go-libp2p-pubsub's own JSONTracer and PBTracer (and its RemoteTracer when a
// collector is given), publishes a known set of messages, waits for them to settle, closes the
// tracers so every file is complete, and prints a JSON summary on stdout.
//
// It exists to test the exporter against real go-libp2p-pubsub output: the exporter and an oracle
// read the same files, so their counts can be compared exactly.
//
//	gossipsub-swarm -n 5 -messages 12 -out /tmp/traces -collector /ip4/127.0.0.1/tcp/4001/p2p/12D3…
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

type config struct {
	n           int
	messages    int
	interval    time.Duration
	topic       string
	out         string
	collector   string
	rejectEvery int
	topology    string
	seed        string
	timeout     time.Duration
	quiet       time.Duration
}

// summary is what the swarm prints: enough for a test to know what to expect from the traces.
type summary struct {
	Topic      string              `json:"topic"`
	Topology   string              `json:"topology"`
	Peers      []string            `json:"peers"`
	Published  map[string]int      `json:"published"`
	Rejecter   string              `json:"rejecter,omitempty"`
	Rejected   int                 `json:"rejected"`
	Delivered  int                 `json:"delivered"`
	Files      map[string][]string `json:"files"`
	Collector  string              `json:"collector,omitempty"`
	StartNanos int64               `json:"start_ns"`
	EndNanos   int64               `json:"end_ns"`
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 5, "number of hosts")
	flag.IntVar(&c.messages, "messages", 12, "messages to publish (round-robin over every host but the rejecter)")
	flag.DurationVar(&c.interval, "interval", 50*time.Millisecond, "pause between publishes")
	flag.StringVar(&c.topic, "topic", "gossipsub-swarm", "topic")
	flag.StringVar(&c.out, "out", "", "directory for the tracer files (required)")
	flag.StringVar(&c.collector, "collector", "", "multiaddr with /p2p/ of a remote-tracer collector (optional)")
	flag.IntVar(&c.rejectEvery, "reject-every", 4, "the last host's validator rejects every k-th message (0: no validator)")
	flag.StringVar(&c.topology, "topology", "full", "full (every host dials every other) or ring (messages take several hops)")
	flag.StringVar(&c.seed, "seed", "gossipsub-swarm", "seed of the hosts' keys (same seed, same peer ids)")
	flag.DurationVar(&c.timeout, "timeout", 60*time.Second, "bound on the whole run")
	flag.DurationVar(&c.quiet, "quiet", 500*time.Millisecond, "settled: no message event for this long after the last delivery")
	flag.Parse()
	if err := c.check(); err != nil {
		fmt.Fprintln(os.Stderr, "gossipsub-swarm:", err)
		os.Exit(2)
	}
	s, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gossipsub-swarm:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	_ = enc.Encode(s)
}

func (c *config) check() error {
	switch {
	case c.out == "":
		return errors.New("-out is required")
	case c.n < 2 || c.n > 32:
		return errors.New("-n must be 2..32")
	case c.messages < 1:
		return errors.New("-messages must be at least 1")
	case c.topology != "full" && c.topology != "ring":
		return errors.New("-topology must be full or ring")
	case c.rejectEvery < 0:
		return errors.New("-reject-every must be >= 0")
	case c.rejectEvery > 0 && c.n < 3:
		return errors.New("a rejecting host needs -n >= 3 (it never publishes)")
	}
	return nil
}

// node is one host with its pubsub, tracers and subscription.
type node struct {
	h      host.Host
	ps     *pubsub.PubSub
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	tracer *fanout
	files  []string
}

func run(c config) (*summary, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(c.out)
	if err != nil {
		return nil, err
	}
	c.out = out // /proc/self/fd shows absolute paths
	var collector *peer.AddrInfo
	if c.collector != "" {
		ai, err := peer.AddrInfoFromString(c.collector)
		if err != nil {
			return nil, fmt.Errorf("-collector: %w", err)
		}
		collector = ai
	}
	activity := newActivity()
	nodes := make([]*node, 0, c.n)
	defer func() {
		for _, nd := range nodes {
			nd.h.Close()
		}
	}()
	rejecter := -1
	if c.rejectEvery > 0 {
		rejecter = c.n - 1
	}
	for i := 0; i < c.n; i++ {
		nd, err := newNode(ctx, c, i, i == rejecter, collector, activity)
		if err != nil {
			return nil, fmt.Errorf("host %d: %w", i, err)
		}
		nodes = append(nodes, nd)
	}
	// full: every host dials every earlier one, so each mesh holds all others and most messages
	// also arrive again (duplicates); ring: host i dials i-1 (and the last the first), so messages
	// travel several hops and still meet from both sides
	for i, nd := range nodes {
		others := nodes[:i]
		if c.topology == "ring" {
			others = nil
			if i > 0 {
				others = append(others, nodes[i-1])
			}
			if i == len(nodes)-1 && i > 1 {
				others = append(others, nodes[0])
			}
		}
		for _, other := range others {
			if err := nd.h.Connect(ctx, peer.AddrInfo{ID: other.h.ID(), Addrs: other.h.Addrs()}); err != nil {
				return nil, fmt.Errorf("connect %d: %w", i, err)
			}
		}
	}
	degree := c.n - 1
	if c.topology == "ring" {
		degree = min(2, c.n-1)
	}
	want := min(degree, pubsub.GossipSubDlo)
	if err := poll(ctx, "every host's mesh to form", func() bool {
		for _, nd := range nodes {
			if len(nd.topic.ListPeers()) < degree || nd.tracer.meshSize() < want {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}

	s := &summary{Topic: c.topic, Topology: c.topology, Published: map[string]int{}, Files: map[string][]string{}, StartNanos: time.Now().UnixNano()}
	for _, nd := range nodes {
		s.Peers = append(s.Peers, nd.h.ID().String())
	}
	if rejecter >= 0 {
		s.Rejecter = nodes[rejecter].h.ID().String()
	}
	publishers := nodes
	if rejecter >= 0 {
		publishers = nodes[:rejecter]
	}
	expected := 0
	for i := 0; i < c.messages; i++ {
		p := publishers[i%len(publishers)]
		if err := p.topic.Publish(ctx, []byte("msg-"+strconv.Itoa(i))); err != nil {
			return nil, fmt.Errorf("publish %d: %w", i, err)
		}
		s.Published[p.h.ID().String()]++
		expected += c.n
		if rejects(c.rejectEvery, i) {
			s.Rejected++
			expected-- // the rejecter never delivers it
		}
		if c.interval > 0 && i < c.messages-1 {
			time.Sleep(c.interval) // pacing only: correctness never depends on it
		}
	}
	if err := poll(ctx, fmt.Sprintf("%d deliveries", expected), func() bool { return activity.delivered() >= expected }); err != nil {
		return nil, err
	}
	// late copies (duplicates) still arrive after the last delivery: wait for a quiet spell
	if err := poll(ctx, "message events to settle", func() bool { return activity.quietFor() >= c.quiet }); err != nil {
		return nil, err
	}
	s.Delivered = activity.delivered()
	s.EndNanos = time.Now().UnixNano()

	// stop every tracer at once, so the files and the collector hold the same events
	for _, nd := range nodes {
		nd.tracer.stop()
	}
	for _, nd := range nodes {
		if err := nd.tracer.close(ctx, nd.h, collector, nd.files); err != nil {
			return nil, err
		}
	}
	for _, nd := range nodes {
		for _, f := range nd.files {
			kind := strings.TrimPrefix(filepath.Ext(f), ".")
			s.Files[kind] = append(s.Files[kind], f)
		}
	}
	if collector != nil {
		s.Collector = collector.ID.String()
	}
	return s, nil
}

func rejects(every, i int) bool { return every > 0 && i%every == every-1 }

func newNode(ctx context.Context, c config, i int, rejecter bool, collector *peer.AddrInfo, act *activity) (*node, error) {
	key, err := seededKey(c.seed, i)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return nil, err
	}
	nd := &node{h: h}
	base := filepath.Join(c.out, fmt.Sprintf("node%d", i))
	jt, err := pubsub.NewJSONTracer(base + ".json")
	if err != nil {
		h.Close()
		return nil, err
	}
	pt, err := pubsub.NewPBTracer(base + ".pb")
	if err != nil {
		h.Close()
		return nil, err
	}
	nd.files = []string{base + ".json", base + ".pb"}
	nd.tracer = &fanout{act: act, mesh: map[string]bool{}, topic: c.topic, json: jt, pb: pt}
	if collector != nil {
		rt, err := pubsub.NewRemoteTracer(ctx, h, *collector, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			h.Close()
			return nil, err
		}
		nd.tracer.remote = rt
	}
	opts := []pubsub.Option{pubsub.WithEventTracer(nd.tracer)}
	nd.ps, err = pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		h.Close()
		return nil, err
	}
	if rejecter {
		every := c.rejectEvery
		err = nd.ps.RegisterTopicValidator(c.topic, func(_ context.Context, _ peer.ID, m *pubsub.Message) bool {
			n, err := strconv.Atoi(strings.TrimPrefix(string(m.Data), "msg-"))
			return err == nil && !rejects(every, n)
		})
		if err != nil {
			h.Close()
			return nil, err
		}
	}
	if nd.topic, err = nd.ps.Join(c.topic); err != nil {
		h.Close()
		return nil, err
	}
	if nd.sub, err = nd.topic.Subscribe(); err != nil {
		h.Close()
		return nil, err
	}
	go func() { // drain the subscription; deliveries are counted from the tracer
		for {
			if _, err := nd.sub.Next(ctx); err != nil {
				return
			}
		}
	}()
	return nd, nil
}

// seededKey makes host i's identity from the seed, so a run's peer ids are known in advance.
func seededKey(seed string, i int) (crypto.PrivKey, error) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(i))
	sum := sha256.Sum256(append([]byte(seed), buf[:]...))
	key, _, err := crypto.GenerateEd25519Key(strings.NewReader(string(sum[:])))
	return key, err
}

// fanout hands every event to the file tracers and the remote tracer until stopped, and keeps
// what the swarm needs to know: its own mesh size and when message events happen.
type fanout struct {
	mu      sync.RWMutex
	stopped bool
	act     *activity
	topic   string
	meshMu  sync.Mutex
	mesh    map[string]bool
	json    *pubsub.JSONTracer
	pb      *pubsub.PBTracer
	remote  *pubsub.RemoteTracer
}

func (f *fanout) Trace(evt *pb.TraceEvent) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.stopped {
		return
	}
	f.json.Trace(evt)
	f.pb.Trace(evt)
	if f.remote != nil {
		f.remote.Trace(evt)
	}
	switch evt.GetType() {
	case pb.TraceEvent_GRAFT:
		if evt.GetGraft().GetTopic() == f.topic {
			f.meshMu.Lock()
			f.mesh[string(evt.GetGraft().GetPeerID())] = true
			f.meshMu.Unlock()
		}
	case pb.TraceEvent_PRUNE:
		if evt.GetPrune().GetTopic() == f.topic {
			f.meshMu.Lock()
			delete(f.mesh, string(evt.GetPrune().GetPeerID()))
			f.meshMu.Unlock()
		}
	case pb.TraceEvent_DELIVER_MESSAGE:
		f.act.event(true)
	case pb.TraceEvent_PUBLISH_MESSAGE, pb.TraceEvent_DUPLICATE_MESSAGE, pb.TraceEvent_REJECT_MESSAGE:
		f.act.event(false)
	}
}

func (f *fanout) meshSize() int {
	f.meshMu.Lock()
	defer f.meshMu.Unlock()
	return len(f.mesh)
}

func (f *fanout) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
}

// close closes the tracers and waits until they have written everything: go's tracers flush in a
// goroutine of their own and say nothing when done, so the files are watched until closed and the
// remote tracer's stream until it is gone.
func (f *fanout) close(ctx context.Context, h host.Host, collector *peer.AddrInfo, files []string) error {
	f.json.Close()
	f.pb.Close()
	if err := poll(ctx, "the tracer files to be closed", func() bool { return !anyOpen(files...) }); err != nil {
		return err
	}
	if f.remote == nil {
		return nil
	}
	f.remote.Close()
	return poll(ctx, "the remote tracer's stream to close", func() bool {
		for _, conn := range h.Network().ConnsToPeer(collector.ID) {
			for _, s := range conn.GetStreams() {
				if s.Protocol() == pubsub.RemoteTracerProtoID && s.Stat().Direction == network.DirOutbound {
					return false
				}
			}
		}
		return true
	})
}

// anyOpen says whether this process still has one of the files open (Linux: /proc/self/fd).
func anyOpen(files ...string) bool {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue
		}
		for _, f := range files {
			if target == f {
				return true
			}
		}
	}
	return false
}

// poll checks cond every 20 ms until it holds or ctx ends.
func poll(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-t.C:
		}
	}
	return nil
}

// activity counts deliveries and remembers when the last message event happened.
type activity struct {
	mu       sync.Mutex
	delivers int
	last     time.Time
}

func newActivity() *activity { return &activity{last: time.Now()} }

func (a *activity) event(deliver bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if deliver {
		a.delivers++
	}
	a.last = time.Now()
}

func (a *activity) delivered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delivers
}

func (a *activity) quietFor() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Since(a.last)
}
