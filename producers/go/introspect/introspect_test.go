package introspect

import (
	"context"
	"encoding/json"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

const echo = "/introspect-test/echo/1"

// newHost is a real host on loopback (TCP and QUIC); with probe when p is not nil.
func newHost(t *testing.T, p *Probe) host.Host { return newHostB(t, p) }

func newHostB(t testing.TB, p *Probe) host.Host {
	t.Helper()
	opts := []libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.DisableMetrics(),
	}
	if p != nil {
		opts = append(opts, p.Option())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	h.SetStreamHandler(echo, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func newProbe(t *testing.T) *Probe {
	t.Helper()
	p, err := NewProbe()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newIntrospector(t *testing.T, h host.Host, opts ...Option) *Introspector {
	t.Helper()
	in, err := New(h, append([]Option{NoEndpoint()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	return in
}

// connectOver dials b from a on addresses that contain the given transport text (tcp, quic-v1).
func connectOver(t testing.TB, a, b host.Host, transport string) {
	t.Helper()
	info := peer.AddrInfo{ID: b.ID()}
	for _, addr := range b.Addrs() {
		if strings.Contains(addr.String(), "/"+transport) && (transport != "tcp" || !strings.Contains(addr.String(), "/udp/")) {
			info.Addrs = append(info.Addrs, addr)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
}

// roundTrip opens an echo stream from a to b, sends n bytes, reads them back and closes it.
func roundTrip(t *testing.T, a host.Host, b peer.ID, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.NewStream(ctx, b, echo)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, n)
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || len(got) != n {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	_ = s.Close()
}

// until polls cond for up to 10 s and fails with what as the reason.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connsTo(st *pb.State, p peer.ID) []*pb.Connection {
	var out []*pb.Connection
	for _, c := range st.GetSubsystems().GetConnections() {
		if c.PeerId == p.String() {
			out = append(out, c)
		}
	}
	return out
}

func TestRuntime(t *testing.T) {
	h := newHost(t, nil)
	rt := newIntrospector(t, h).Runtime()
	if rt.Implementation != "go-libp2p" || rt.PeerId != h.ID().String() || rt.Platform == "" {
		t.Fatalf("runtime %v", rt)
	}
	// go test binaries carry no dependency versions: the version is then unset, not made up
	// (cmd/introspect-swarm's test checks a built binary reports it).
	if bi, ok := debug.ReadBuildInfo(); ok && len(bi.Deps) > 0 {
		if !strings.HasPrefix(rt.Version, "v0.") {
			t.Fatalf("version %q, want the go-libp2p module version", rt.Version)
		}
	} else if rt.Version != "" {
		t.Fatalf("version %q without build information", rt.Version)
	}
	names := map[string]bool{}
	for _, et := range rt.EventTypes {
		names[et.Name] = true
	}
	for _, n := range []string{"PeerConnecting", "PeerDisconnecting", "EvtPeerConnectednessChanged", "EvtPeerIdentificationCompleted"} {
		if !names[n] {
			t.Errorf("event type %s not declared", n)
		}
	}
}

func TestConnectionWithProbe(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	in := newIntrospector(t, a, WithProbe(p))
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 1000)

	var c *pb.Connection
	until(t, "the echo stream closed in a State", func() bool {
		cs := connsTo(in.State(time.Minute), b.ID())
		if len(cs) != 1 || len(cs[0].Streams.Streams) == 0 {
			return false
		}
		c = cs[0]
		for _, s := range c.Streams.Streams {
			if s.Protocol == echo && s.Status == pb.Status_CLOSED {
				return true
			}
		}
		return false
	})
	tl := c.Timeline
	if tl.OpenTs == 0 || tl.UpgradedTs == 0 || tl.OpenTs > tl.UpgradedTs || tl.CloseTs != 0 {
		t.Fatalf("timeline %v: want open on the wire <= upgraded, not closed", tl)
	}
	if c.Role != pb.Role_INITIATOR || c.Status != pb.Status_ACTIVE || string(c.TransportId) != "ip4+tcp" {
		t.Fatalf("role %v status %v transport %q", c.Role, c.Status, c.TransportId)
	}
	if c.Attribs.Multiplexer != "/yamux/1.0.0" || c.Attribs.Encryption == "" {
		t.Fatalf("attribs %v", c.Attribs)
	}
	if !strings.HasPrefix(c.Endpoints.SrcMultiaddr, "/ip4/127.0.0.1/tcp/") || !strings.HasPrefix(c.Endpoints.DstMultiaddr, "/ip4/127.0.0.1/tcp/") {
		t.Fatalf("endpoints %v", c.Endpoints)
	}
	for _, s := range c.Streams.Streams {
		if s.Protocol != echo {
			continue
		}
		if s.Role != pb.Role_INITIATOR || s.Timeline.OpenTs == 0 || s.Timeline.CloseTs < s.Timeline.OpenTs {
			t.Fatalf("echo stream %v", s)
		}
	}
	// The only connection to b: its traffic is b's stream bytes, at least the echo's 1000 each way.
	if c.Traffic == nil || c.Traffic.TrafficOut.CumBytes < 1000 || c.Traffic.TrafficIn.CumBytes < 1000 {
		t.Fatalf("traffic %v", c.Traffic)
	}
	st := in.State(time.Minute)
	if st.Traffic == nil || st.Traffic.TrafficOut.CumBytes < c.Traffic.TrafficOut.CumBytes {
		t.Fatalf("node traffic %v below the connection's %v", st.Traffic, c.Traffic)
	}
	if st.InstantTs == 0 || st.StartTs == 0 || st.StartTs > st.InstantTs {
		t.Fatalf("instant %d start %d", st.InstantTs, st.StartTs)
	}
}

// Without a probe nothing saw the connection open on the wire, nor counted bytes: those fields
// stay unset rather than borrowed from the upgrade.
func TestWithoutProbeNothingFabricated(t *testing.T) {
	a := newHost(t, nil)
	b := newHost(t, nil)
	in := newIntrospector(t, a)
	connectOver(t, a, b, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.NewStream(ctx, b.ID(), echo)
	if err != nil {
		t.Fatal(err)
	}
	echoStream := func() *pb.Stream {
		for _, c := range connsTo(in.State(time.Minute), b.ID()) {
			for _, ps := range c.Streams.Streams {
				if ps.Protocol == echo {
					return ps
				}
			}
		}
		return nil
	}
	if ps := echoStream(); ps == nil || ps.Status != pb.Status_ACTIVE || ps.Timeline.OpenTs == 0 {
		t.Fatalf("open echo stream: %v", ps)
	}
	beforeClose := uint64(time.Now().UnixMilli())
	_ = s.Reset()
	var ps *pb.Stream
	until(t, "the echo stream's end seen by polling", func() bool {
		ps = echoStream()
		return ps != nil && ps.Status == pb.Status_CLOSED
	})
	// Without the probe the end is when a State found the stream gone: after the close.
	if ps.Timeline.CloseTs < beforeClose {
		t.Fatalf("close_ts %d before the close at %d", ps.Timeline.CloseTs, beforeClose)
	}
	st := in.State(time.Minute)
	c := connsTo(st, b.ID())[0]
	if c.Timeline.OpenTs != 0 || c.Timeline.UpgradedTs == 0 {
		t.Fatalf("timeline %v: open_ts must stay unset without the probe", c.Timeline)
	}
	if !isUnmeasured(c.Traffic) || st.Traffic != nil {
		t.Fatalf("traffic %v / %v without a bandwidth reporter", c.Traffic, st.Traffic)
	}
	if !isUnmeasured(ps.Traffic) {
		t.Fatalf("stream traffic %v: go-libp2p measures none", ps.Traffic)
	}
}

// isUnmeasured: present for the observer UI, both gauges present and empty (unset for the exporter).
func isUnmeasured(tr *pb.Traffic) bool {
	return tr != nil && tr.TrafficIn != nil && tr.TrafficOut != nil &&
		proto.Size(tr.TrafficIn) == 0 && proto.Size(tr.TrafficOut) == 0
}

func TestClosedConnectionRetainedThenDropped(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	in := newIntrospector(t, a, WithProbe(p), Retention(1500*time.Millisecond))
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 10)
	if n := len(connsTo(in.State(time.Minute), b.ID())); n != 1 {
		t.Fatalf("%d connections to b", n)
	}
	closedAt := time.Now()
	if err := a.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	var c *pb.Connection
	until(t, "the closed connection in a State", func() bool {
		cs := connsTo(in.State(time.Minute), b.ID())
		if len(cs) == 1 && cs[0].Status == pb.Status_CLOSED {
			c = cs[0]
			return true
		}
		return false
	})
	if c.Timeline.CloseTs < uint64(closedAt.UnixMilli()) || c.Timeline.CloseTs > uint64(time.Now().UnixMilli()) {
		t.Fatalf("close_ts %d outside the close", c.Timeline.CloseTs)
	}
	for _, s := range c.Streams.Streams {
		if s.Status != pb.Status_CLOSED || s.Timeline.CloseTs == 0 {
			t.Fatalf("stream %v of a closed connection still open", s)
		}
	}
	if c.Traffic == nil || c.Traffic.TrafficOut.CumBytes < 10 {
		t.Fatalf("final traffic %v", c.Traffic)
	}
	// A client asking for a shorter retention does not see it once that has passed.
	time.Sleep(200 * time.Millisecond)
	if n := len(connsTo(in.State(100*time.Millisecond), b.ID())); n != 0 {
		t.Fatalf("closed connection shown past the client's retention")
	}
	until(t, "the closed connection dropped after retention", func() bool {
		return len(connsTo(in.State(time.Minute), b.ID())) == 0
	})
	if time.Since(closedAt) < 1500*time.Millisecond {
		t.Fatalf("dropped after %v, before the retention period", time.Since(closedAt))
	}
}

func TestQUICConnectionStats(t *testing.T) {
	a := newHost(t, nil)
	b := newHost(t, nil)
	in := newIntrospector(t, a)
	connectOver(t, a, b, "quic-v1")
	roundTrip(t, a, b.ID(), 5000)
	cs := connsTo(in.State(time.Minute), b.ID())
	if len(cs) != 1 {
		t.Fatalf("%d connections", len(cs))
	}
	c := cs[0]
	if !strings.Contains(string(c.TransportId), "quic-v1") {
		t.Fatalf("transport %q", c.TransportId)
	}
	// QUIC's own counts: on the wire, so above the 5000 payload bytes; packets counted.
	if c.Traffic == nil || c.Traffic.TrafficOut.CumBytes < 5000 || c.Traffic.TrafficOut.CumPackets == 0 {
		t.Fatalf("traffic %v", c.Traffic)
	}
	if c.LatencyNs == 0 {
		t.Fatalf("no smoothed RTT on a QUIC connection")
	}
}

func TestEvents(t *testing.T) {
	a := newHost(t, nil)
	b := newHost(t, nil)
	in := newIntrospector(t, a)
	var mu sync.Mutex
	got := map[string][]map[string]any{}
	cancel := in.Subscribe(func(e *pb.Event) {
		var content map[string]any
		if err := json.Unmarshal([]byte(e.Content), &content); err != nil {
			t.Errorf("event %s content %q: %v", e.Type.GetName(), e.Content, err)
		}
		mu.Lock()
		got[e.Type.GetName()] = append(got[e.Type.GetName()], content)
		mu.Unlock()
	})
	defer cancel()
	connectOver(t, a, b, "tcp")
	until(t, "connection and identify events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["PeerConnecting"]) > 0 && len(got["EvtPeerConnectednessChanged"]) > 0 && len(got["EvtPeerIdentificationCompleted"]) > 0
	})
	mu.Lock()
	pc := got["PeerConnecting"][0]
	idc := got["EvtPeerIdentificationCompleted"][0]
	mu.Unlock()
	if pc["peerId"] != b.ID().String() || pc["role"] != "INITIATOR" || pc["transport"] != "ip4+tcp" {
		t.Fatalf("PeerConnecting %v", pc)
	}
	if idc["Peer"] != b.ID().String() || idc["AgentVersion"] == "" {
		t.Fatalf("identify %v", idc)
	}
	_ = a.Network().ClosePeer(b.ID())
	until(t, "PeerDisconnecting", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["PeerDisconnecting"]) > 0
	})
}

func TestPeerstorePart(t *testing.T) {
	a := newHost(t, nil)
	b := newHost(t, nil)
	in := newIntrospector(t, a)
	connectOver(t, a, b, "tcp")
	var ps *pb.PeerStore
	until(t, "b's agent and protocols in the peerstore", func() bool {
		ps = in.State(time.Minute).Subsystems.Peerstore
		return len(ps.Agents) > 0 && ps.GetPeersWithProtocols() > 0
	})
	if ps.KnownPeers < 2 || ps.GetPeersWithAddrs() < 1 || ps.GetPeersWithKeys() < 2 {
		t.Fatalf("peerstore %v", ps)
	}
	if len(ps.AddrsPerPeer) != 9 || len(ps.LatencyEwma) != 14 {
		t.Fatalf("layouts %d %d", len(ps.AddrsPerPeer), len(ps.LatencyEwma))
	}
	if ps.MaxPeers != nil || ps.EvictedPeers != nil {
		t.Fatalf("limits go-libp2p does not have were filled: %v", ps)
	}
}

// With the probe, every connection has its open time on the wire, whichever transport and
// direction: TCP and QUIC, dialled and accepted.
func TestProbeOpenTimeEveryTransport(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	in := newIntrospector(t, a, WithProbe(p))
	type want struct {
		transport string
		role      pb.Role
	}
	cases := map[peer.ID]want{}
	for _, tr := range []string{"tcp", "quic-v1"} {
		out, inb := newHost(t, nil), newHost(t, nil)
		connectOver(t, a, out, tr)
		connectOver(t, inb, a, tr)
		cases[out.ID()] = want{tr, pb.Role_INITIATOR}
		cases[inb.ID()] = want{tr, pb.Role_RESPONDER}
	}
	st := in.State(time.Minute)
	for id, w := range cases {
		cs := connsTo(st, id)
		if len(cs) != 1 {
			t.Fatalf("%s %v: %d connections", w.transport, w.role, len(cs))
		}
		c := cs[0]
		if !strings.HasSuffix(string(c.TransportId), "+"+w.transport) || c.Role != w.role {
			t.Fatalf("want %v got transport %q role %v", w, c.TransportId, c.Role)
		}
		if c.Timeline.OpenTs == 0 || c.Timeline.OpenTs > c.Timeline.UpgradedTs {
			t.Fatalf("%s %v: timeline %v", w.transport, w.role, c.Timeline)
		}
	}
}

// Streams that open and end between two States are still reported, once each, on their
// connection (the probe's scopes saw them; the peer has one connection).
func TestShortStreamsBetweenStates(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	in := newIntrospector(t, a, WithProbe(p))
	connectOver(t, a, b, "tcp")
	in.State(time.Minute)
	for range 5 {
		roundTrip(t, a, b.ID(), 10)
	}
	count := func() (n int) {
		for _, c := range connsTo(in.State(time.Minute), b.ID()) {
			for _, s := range c.Streams.Streams {
				if s.Protocol == echo && s.Status == pb.Status_CLOSED && s.Role == pb.Role_INITIATOR && s.Timeline.CloseTs >= s.Timeline.OpenTs && s.Timeline.OpenTs > 0 {
					n++
				}
			}
		}
		return n
	}
	until(t, "five closed echo streams", func() bool { return count() >= 5 })
	if n := count(); n != 5 {
		t.Fatalf("%d echo streams, want 5", n)
	}
}

// With no client taking States, closed connections still leave after the retention period.
func TestPrunedWithoutStates(t *testing.T) {
	a := newHost(t, nil)
	in := newIntrospector(t, a, Retention(200*time.Millisecond))
	b := newHost(t, nil)
	connectOver(t, a, b, "tcp")
	until(t, "the connection tracked", func() bool {
		in.conns.mu.Lock()
		defer in.conns.mu.Unlock()
		return len(in.conns.conns) == 1
	})
	_ = a.Network().ClosePeer(b.ID())
	time.Sleep(1200 * time.Millisecond)
	// Another connection's close prunes the first, gone for longer than the retention period.
	c := newHost(t, nil)
	connectOver(t, a, c, "tcp")
	_ = a.Network().ClosePeer(c.ID())
	until(t, "the first connection pruned without a State", func() bool {
		in.conns.mu.Lock()
		defer in.conns.mu.Unlock()
		for _, rec := range in.conns.conns {
			if rec.peer == b.ID() {
				return false
			}
		}
		return true
	})
}

// A connection that was there before New: its earlier bytes were not watched, so it carries no
// per-connection traffic, while the node's totals (counted by the probe since construction) do.
func TestConnectionBeforeNewHasNoTraffic(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 100)
	in := newIntrospector(t, a, WithProbe(p))
	roundTrip(t, a, b.ID(), 100)
	st := in.State(time.Minute)
	cs := connsTo(st, b.ID())
	if len(cs) != 1 || !isUnmeasured(cs[0].Traffic) {
		t.Fatalf("connections %v: want one, with unmeasured (empty) traffic", cs)
	}
	if cs[0].Timeline.OpenTs == 0 {
		t.Fatalf("the probe saw it open: open_ts should be there")
	}
	if st.Traffic == nil || st.Traffic.TrafficOut.CumBytes < 200 {
		t.Fatalf("node traffic %v", st.Traffic)
	}
}

// Streams carry an empty Traffic (go-libp2p measures none per stream: present for the observer
// UI, unset for the exporter); measured connection traffic is never replaced.
func TestStreamTrafficSentEmpty(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	in := newIntrospector(t, a, WithProbe(p))
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 100)
	var streams []*pb.Stream
	var conn *pb.Connection
	until(t, "the echo stream", func() bool {
		cs := connsTo(in.State(time.Minute), b.ID())
		if len(cs) != 1 || len(cs[0].Streams.Streams) == 0 {
			return false
		}
		conn, streams = cs[0], cs[0].Streams.Streams
		return true
	})
	if conn.Traffic.GetTrafficOut().GetCumBytes() < 100 {
		t.Fatalf("measured connection traffic %v lost", conn.Traffic)
	}
	for _, s := range streams {
		if !isUnmeasured(s.Traffic) {
			t.Fatalf("stream traffic %v, want both DataGauges present and empty", s.Traffic)
		}
	}
}

// A peer talked to before New, then reconnected after: the new connection's traffic starts
// from what the probe had counted for the peer when the introspector started.
func TestTrafficBaselineFromBeforeNew(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 5000)
	_ = a.Network().ClosePeer(b.ID())
	until(t, "disconnected", func() bool { return len(a.Network().ConnsToPeer(b.ID())) == 0 })
	in := newIntrospector(t, a, WithProbe(p))
	a.Peerstore().ClearAddrs(b.ID()) // identify taught a b's QUIC address, which the swarm would prefer
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 100)
	cs := connsTo(in.State(time.Minute), b.ID())
	var open *pb.Connection
	for _, c := range cs {
		if c.Status == pb.Status_ACTIVE {
			open = c
		}
	}
	if open == nil || open.Traffic == nil || string(open.TransportId) != "ip4+tcp" {
		t.Fatalf("connections %v", cs)
	}
	if out := open.Traffic.TrafficOut.CumBytes; out < 100 || out >= 5000 {
		t.Fatalf("traffic out %d: want the new connection's bytes only", out)
	}
}
