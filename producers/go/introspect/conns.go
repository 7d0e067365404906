package introspect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/quic-go/quic-go"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// A busy node closes many connections and streams within a retention period: keep the newest.
const (
	maxClosedConns          = 1024
	maxClosedStreamsPerConn = 256
)

// tracker keeps the host's connections and streams from the swarm's notifications, the
// probe's scopes and what each State finds in the swarm, and prunes what closed before the
// retention period.
type tracker struct {
	h     host.Host
	probe *Probe
	keep  time.Duration
	pub   Publisher

	mu           sync.Mutex
	conns        map[network.Conn]*connRec
	byScope      map[*streamScope]*streamRec
	peers        map[peer.ID]*peerRec
	unattributed uint64 // streams that began and ended between two States on a peer with several connections
	node         rate
	pruned       uint64                // when prune last ran (ms)
	before       map[peer.ID][2]uint64 // the probe's per-peer counts when the introspector started
}

type connRec struct {
	conn      network.Conn
	id        string
	peer      peer.ID
	role      pb.Role
	local     string
	remote    string
	transport string
	security  string
	muxer     string
	openTS    uint64 // on the wire (probe); 0 when not seen
	upgraded  uint64 // Stat().Opened: when the swarm took the upgraded connection in
	closeTS   uint64
	quic      *quic.Conn

	announced bool // PeerConnecting published (or the connection predates the introspector)

	// Traffic from the probe's per-peer counts, exact while this was the peer's only connection.
	counted bool // the connection opened under our eyes, so its baseline is known
	shared  bool // another connection to the peer overlapped it: per-connection bytes unknown
	base    [2]uint64
	final   *[4]uint64 // at close: bytes in, out (and packets in, out for QUIC)
	rate    rate

	streams map[string]*streamRec // by stream id (swarm) or a probe sequence
}

type streamRec struct {
	id      string
	stream  network.Stream // nil for a stream only its scope saw
	scope   *streamScope
	proto   string
	role    pb.Role
	openTS  uint64
	closeTS uint64
}

type peerRec struct {
	open      int
	base      [2]uint64 // the peer's byte counts when its last connection closed
	lastClose uint64
}

func newTracker(h host.Host, probe *Probe, keep time.Duration, pub Publisher) *tracker {
	return &tracker{
		h: h, probe: probe, keep: keep, pub: pub,
		conns:   map[network.Conn]*connRec{},
		byScope: map[*streamScope]*streamRec{},
		peers:   map[peer.ID]*peerRec{},
	}
}

// attach registers for the swarm's notifications and takes in the connections that exist.
func (t *tracker) attach() (stop func()) {
	nb := &network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { t.connected(c) },
		DisconnectedF: func(_ network.Network, c network.Conn) { t.disconnected(c, time.Now()) },
	}
	if t.probe != nil {
		// Bytes exchanged with a peer before the introspector started belong to no connection it reports.
		t.mu.Lock()
		t.before = t.probe.bw.snapshot()
		t.mu.Unlock()
	}
	t.h.Network().Notify(nb)
	for _, c := range t.h.Network().Conns() {
		t.existing(c)
	}
	return func() { t.h.Network().StopNotify(nb) }
}

// describe reads what does not change about c (outside the tracker's lock: it calls into the swarm).
func describe(c network.Conn) *connRec {
	st := c.Stat()
	cs := c.ConnState()
	r := &connRec{
		conn:      c,
		id:        c.ID(),
		peer:      c.RemotePeer(),
		role:      roleOf(st.Direction),
		local:     addrText(c.LocalMultiaddr()),
		remote:    addrText(c.RemoteMultiaddr()),
		transport: transportID(c.RemoteMultiaddr()),
		security:  string(cs.Security),
		muxer:     string(cs.StreamMultiplexer),
		upgraded:  ms(st.Opened),
		streams:   map[string]*streamRec{},
	}
	if s, ok := c.Scope().(*connScope); ok {
		r.openTS = ms(s.opened)
	}
	var qc *quic.Conn
	if c.As(&qc) && qc != nil {
		r.quic = qc
	}
	return r
}

// existing takes in a connection that was there before the introspector: its bytes before
// now were not watched, so it never carries per-connection traffic from the probe.
func (t *tracker) existing(c network.Conn) {
	rec := describe(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; !ok {
		t.add(rec, false)
		rec.announced = true
	}
}

// connected is the swarm's Connected notification; a State may have found the connection first.
func (t *tracker) connected(c network.Conn) {
	rec := describe(c)
	t.mu.Lock()
	if known, ok := t.conns[c]; ok {
		rec = known
	} else {
		t.add(rec, t.probe != nil)
	}
	announce := !rec.announced
	rec.announced = true
	t.mu.Unlock()
	if announce {
		t.pub.Publish("PeerConnecting", map[string]any{
			"peerId": rec.peer.String(), "transport": rec.transport, "role": roleName(rec.role),
		})
	}
}

// add takes in rec (t.mu held). counted says every byte of it went through the probe while
// the introspector watched, so the peer's baseline applies.
func (t *tracker) add(rec *connRec, counted bool) {
	pr := t.peers[rec.peer]
	if pr == nil {
		pr = &peerRec{base: t.before[rec.peer]}
		t.peers[rec.peer] = pr
	}
	if pr.open > 0 {
		rec.shared = true
		for _, other := range t.conns {
			if other.peer == rec.peer && other.closeTS == 0 {
				other.shared = true
			}
		}
	}
	pr.open++
	rec.counted = counted
	rec.base = pr.base
	t.conns[rec.conn] = rec
}

func (t *tracker) disconnected(c network.Conn, at time.Time) {
	var totals [2]uint64
	if t.probe != nil {
		totals[0], totals[1] = t.probe.bw.PeerTotals(c.RemotePeer())
	}
	var qs *quic.ConnectionStats
	t.mu.Lock()
	rec := t.conns[c]
	if rec != nil && rec.quic != nil {
		s := rec.quic.ConnectionStats()
		qs = &s
	}
	closed := rec != nil && t.close(rec, ms(at), totals, qs)
	if now := ms(at); now >= t.pruned+1000 {
		// Closed connections pile up even when no client takes States: prune here too, at most once a second.
		t.prune(now)
	}
	t.mu.Unlock()
	if closed {
		t.pub.Publish("PeerDisconnecting", map[string]any{
			"peerId": rec.peer.String(), "transport": rec.transport,
			"openTime": rec.firstTS(), "age": sub(ms(at), rec.firstTS()),
		})
	}
}

// close marks rec closed at now (t.mu held); false when it already was.
func (t *tracker) close(rec *connRec, now uint64, totals [2]uint64, qs *quic.ConnectionStats) bool {
	if rec.closeTS != 0 {
		return false
	}
	rec.closeTS = now
	switch {
	case qs != nil:
		rec.final = &[4]uint64{qs.BytesReceived, qs.BytesSent, qs.PacketsReceived, qs.PacketsSent}
	case rec.counted && !rec.shared:
		rec.final = &[4]uint64{sub(totals[0], rec.base[0]), sub(totals[1], rec.base[1])}
	}
	for _, s := range rec.streams {
		if s.closeTS == 0 && (s.scope == nil || s.scope.closed.Load() == 0) {
			// The connection is gone, so are its streams; a scope's own end, when it
			// comes, is finer and replaces this.
			s.closeTS = now
		}
	}
	if pr := t.peers[rec.peer]; pr != nil {
		pr.open--
		if pr.open <= 0 {
			pr.open = 0
			pr.base = totals
			pr.lastClose = now
		}
	}
	return true
}

// firstTS is the earliest measured moment of the connection.
func (r *connRec) firstTS() uint64 {
	if r.openTS != 0 {
		return r.openTS
	}
	return r.upgraded
}

type liveConn struct {
	conn    network.Conn
	streams []network.Stream
}

// snapshot reconciles with the swarm, prunes, and returns the connections to report for a
// client with the given retention.
func (t *tracker) snapshot(now time.Time, retention time.Duration) []*pb.Connection {
	conns := t.h.Network().Conns()
	live := make([]liveConn, 0, len(conns))
	fresh := []*connRec{}
	t.mu.Lock()
	known := make(map[network.Conn]bool, len(t.conns))
	for c := range t.conns {
		known[c] = true
	}
	t.mu.Unlock()
	for _, c := range conns {
		live = append(live, liveConn{conn: c, streams: c.GetStreams()})
		if !known[c] {
			fresh = append(fresh, describe(c))
		}
	}
	var ended []*streamScope
	if t.probe != nil {
		ended = t.probe.takeEnded()
	}
	nowMS := ms(now)

	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rec := range fresh {
		if _, ok := t.conns[rec.conn]; !ok {
			t.add(rec, t.probe != nil) // ahead of its Connected notification, which announces it
		}
	}
	isLive := make(map[network.Conn]bool, len(live))
	for _, lc := range live {
		isLive[lc.conn] = true
		if rec := t.conns[lc.conn]; rec != nil {
			t.syncStreams(rec, lc.streams, nowMS)
		}
	}
	for c, rec := range t.conns {
		if rec.closeTS == 0 && !isLive[c] && c.IsClosed() {
			var totals [2]uint64
			if t.probe != nil {
				totals[0], totals[1] = t.probe.bw.PeerTotals(rec.peer)
			}
			t.close(rec, nowMS, totals, nil) // a Disconnected notification not yet delivered
		}
	}
	for _, s := range ended {
		t.streamEnded(s)
	}
	t.prune(nowMS)
	return t.render(nowMS, retention)
}

// syncStreams adds the swarm's streams on rec and closes those that left it (t.mu held).
func (t *tracker) syncStreams(rec *connRec, streams []network.Stream, now uint64) {
	seen := make(map[string]bool, len(streams))
	for _, s := range streams {
		id := s.ID()
		seen[id] = true
		sr := rec.streams[id]
		if sr == nil {
			st := s.Stat()
			sr = &streamRec{id: id, stream: s, role: roleOf(st.Direction), openTS: ms(st.Opened)}
			if sc, ok := s.Scope().(*streamScope); ok {
				sc.recorded.Store(true)
				sr.scope = sc
				sr.openTS = ms(sc.opened)
				if at := sc.closed.Load(); at > 0 {
					sr.closeTS = uint64(at)
				} else {
					t.byScope[sc] = sr
				}
			}
			rec.streams[id] = sr
		}
		if p := string(s.Protocol()); p != "" {
			sr.proto = p
		}
	}
	for id, sr := range rec.streams {
		if sr.closeTS != 0 || sr.stream == nil || seen[id] {
			continue
		}
		if sr.scope != nil {
			if at := sr.scope.closed.Load(); at > 0 {
				sr.closeTS = uint64(at)
				delete(t.byScope, sr.scope)
			}
			continue // its scope's end is on its way
		}
		sr.closeTS = now // without the probe: as fine as States are taken
	}
}

// streamEnded records a stream scope's end (t.mu held). A stream no State saw is put on its
// connection only when exactly one connection to its peer spans its life; otherwise counted.
func (t *tracker) streamEnded(s *streamScope) {
	at := uint64(s.closed.Load())
	if sr := t.byScope[s]; sr != nil {
		delete(t.byScope, s)
		if sr.closeTS == 0 || sr.closeTS > at {
			sr.closeTS = at
		}
		if sr.proto == "" {
			sr.proto = s.protocol()
		}
		return
	}
	if s.recorded.Load() {
		return // found on its connection in this State, already closed there
	}
	opened := ms(s.opened)
	var owner *connRec
	n := 0
	for _, rec := range t.conns {
		if rec.peer != s.peer || rec.firstTS() == 0 || rec.firstTS() > opened {
			continue
		}
		if rec.closeTS != 0 && rec.closeTS+1000 < at { // Disconnected may come a little after the streams' ends
			continue
		}
		owner = rec
		n++
	}
	if n != 1 {
		t.unattributed++
		return
	}
	id := fmt.Sprintf("%s-p%d", owner.id, s.seq)
	if _, dup := owner.streams[id]; dup {
		return
	}
	owner.streams[id] = &streamRec{
		id: id, scope: s, proto: s.protocol(), role: roleOf(s.dir),
		openTS: opened, closeTS: at,
	}
}

// prune forgets what closed before the keep period and bounds what closed within it (t.mu held).
func (t *tracker) prune(now uint64) {
	t.pruned = now
	horizon := uint64(0)
	if keep := uint64(t.keep.Milliseconds()); now > keep {
		horizon = now - keep
	}
	var closed []*connRec
	for c, rec := range t.conns {
		if rec.closeTS != 0 && rec.closeTS < horizon {
			t.drop(c, rec)
			continue
		}
		if rec.closeTS != 0 {
			closed = append(closed, rec)
		}
		var done []*streamRec
		for id, s := range rec.streams {
			if s.closeTS != 0 && s.closeTS < horizon {
				delete(rec.streams, id)
				delete(t.byScope, s.scope)
			} else if s.closeTS != 0 {
				done = append(done, s)
			}
		}
		if extra := len(done) - maxClosedStreamsPerConn; extra > 0 {
			slices.SortFunc(done, func(a, b *streamRec) int { return cmp.Compare(a.closeTS, b.closeTS) })
			for _, s := range done[:extra] {
				delete(rec.streams, s.id)
			}
		}
	}
	if extra := len(closed) - maxClosedConns; extra > 0 {
		slices.SortFunc(closed, func(a, b *connRec) int { return cmp.Compare(a.closeTS, b.closeTS) })
		for _, rec := range closed[:extra] {
			t.drop(rec.conn, rec)
		}
	}
	for p, pr := range t.peers {
		if pr.open == 0 && pr.lastClose < horizon {
			delete(t.peers, p)
			delete(t.before, p)
			if t.probe != nil {
				t.probe.bw.forget(p)
			}
		}
	}
}

func (t *tracker) drop(c network.Conn, rec *connRec) {
	for _, s := range rec.streams {
		if s.scope != nil {
			delete(t.byScope, s.scope)
		}
	}
	delete(t.conns, c)
}

// render builds the protobuf connections (t.mu held).
func (t *tracker) render(now uint64, retention time.Duration) []*pb.Connection {
	horizon := uint64(0)
	if r := uint64(retention.Milliseconds()); now > r {
		horizon = now - r
	}
	recs := make([]*connRec, 0, len(t.conns))
	for _, rec := range t.conns {
		if rec.closeTS == 0 || rec.closeTS >= horizon {
			recs = append(recs, rec)
		}
	}
	slices.SortFunc(recs, func(a, b *connRec) int {
		return cmp.Or(cmp.Compare(a.upgraded, b.upgraded), strings.Compare(a.id, b.id))
	})
	openPerPeer := map[peer.ID]int{}
	for _, rec := range t.conns {
		if rec.closeTS == 0 {
			openPerPeer[rec.peer]++
		}
	}
	out := make([]*pb.Connection, 0, len(recs))
	for _, rec := range recs {
		c := &pb.Connection{
			Id:          []byte(rec.id),
			PeerId:      rec.peer.String(),
			Status:      pb.Status_ACTIVE,
			TransportId: []byte(rec.transport),
			Endpoints:   &pb.EndpointPair{SrcMultiaddr: rec.local, DstMultiaddr: rec.remote},
			Timeline:    &pb.Connection_Timeline{OpenTs: rec.openTS, UpgradedTs: rec.upgraded, CloseTs: rec.closeTS},
			Role:        rec.role,
			Attribs:     &pb.Connection_Attributes{Multiplexer: rec.muxer, Encryption: rec.security},
			Streams:     &pb.StreamList{}, // present even when empty (docs/protocol.md §5)
		}
		if rec.closeTS != 0 {
			c.Status = pb.Status_CLOSED
		}
		if c.Traffic = t.connTraffic(rec); c.Traffic == nil {
			c.Traffic = unmeasured()
		}
		if rec.closeTS == 0 {
			c.LatencyNs = t.latency(rec, openPerPeer[rec.peer])
		}
		streams := make([]*streamRec, 0, len(rec.streams))
		for _, s := range rec.streams {
			if s.closeTS == 0 || s.closeTS >= horizon {
				streams = append(streams, s)
			}
		}
		slices.SortFunc(streams, func(a, b *streamRec) int {
			return cmp.Or(cmp.Compare(a.openTS, b.openTS), strings.Compare(a.id, b.id))
		})
		for _, s := range streams {
			ps := &pb.Stream{
				Id:       []byte(s.id),
				Protocol: s.proto,
				Role:     s.role,
				Timeline: &pb.Stream_Timeline{OpenTs: s.openTS, CloseTs: s.closeTS},
				Status:   pb.Status_ACTIVE,
				Traffic:  unmeasured(), // go-libp2p counts no bytes per stream
			}
			if ps.Protocol == "" && s.scope != nil {
				ps.Protocol = s.scope.protocol()
			}
			if s.closeTS != 0 {
				ps.Status = pb.Status_CLOSED
			}
			c.Streams.Streams = append(c.Streams.Streams, ps)
		}
		out = append(out, c)
	}
	return out
}

// unmeasured is the Traffic of a connection or stream whose bytes were not measured: both
// DataGauges present and empty. The observer UI reads every Connection's and Stream's traffic
// in both directions without a check (and throws without it); an all-zero DataGauge is unset in
// proto3, and the exporter reads it as not measured (no series, no sample, no span attribute).
func unmeasured() *pb.Traffic {
	return &pb.Traffic{TrafficIn: &pb.DataGauge{}, TrafficOut: &pb.DataGauge{}}
}

// connTraffic is the connection's traffic where it is exact: QUIC's own counts (bytes on the
// wire, packets), or the probe's stream bytes for the peer while this was its only connection.
func (t *tracker) connTraffic(rec *connRec) *pb.Traffic {
	var in, out uint64
	now := time.Now()
	switch {
	case rec.quic != nil:
		var pin, pout uint64
		switch {
		case rec.closeTS == 0:
			s := rec.quic.ConnectionStats()
			in, out, pin, pout = s.BytesReceived, s.BytesSent, s.PacketsReceived, s.PacketsSent
		case rec.final != nil:
			in, out = rec.final[0], rec.final[1]
			pin, pout = rec.final[2], rec.final[3]
		default:
			return nil
		}
		tr := rec.rate.traffic(now, in, out)
		tr.TrafficIn.CumPackets, tr.TrafficOut.CumPackets = pin, pout
		return tr
	case !rec.counted || rec.shared:
		return nil
	case rec.final != nil:
		in, out = rec.final[0], rec.final[1]
	default:
		pin, pout := t.probe.bw.PeerTotals(rec.peer)
		in, out = sub(pin, rec.base[0]), sub(pout, rec.base[1])
	}
	return rec.rate.traffic(now, in, out)
}

// latency: QUIC's smoothed RTT of this connection; otherwise the peerstore's latency EWMA of
// the peer (ping and identify feed it), only while this is the peer's one open connection.
func (t *tracker) latency(rec *connRec, openToPeer int) uint64 {
	if rec.quic != nil {
		if rtt := rec.quic.ConnectionStats().SmoothedRTT; rtt > 0 {
			return uint64(rtt.Nanoseconds())
		}
		return 0
	}
	if openToPeer != 1 {
		return 0
	}
	if l := t.h.Peerstore().LatencyEWMA(rec.peer); l > 0 {
		return uint64(l.Nanoseconds())
	}
	return 0
}

// nodeTraffic is the node's stream bytes from the probe (nil without it: go-libp2p keeps
// the swarm's bandwidth counter out of reach once the host is built).
func (t *tracker) nodeTraffic(now time.Time) *pb.Traffic {
	if t.probe == nil {
		return nil
	}
	in, out := t.probe.bw.Totals()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.node.traffic(now, in, out)
}

// rate turns cumulative counts into a rate over the last second or more.
type rate struct {
	at      time.Time
	in, out uint64
	bwIn    uint64
	bwOut   uint64
}

func (r *rate) traffic(now time.Time, in, out uint64) *pb.Traffic {
	switch {
	case r.at.IsZero():
		r.at, r.in, r.out = now, in, out
	case now.Sub(r.at) >= time.Second:
		secs := now.Sub(r.at).Seconds()
		r.bwIn = uint64(float64(sub(in, r.in)) / secs)
		r.bwOut = uint64(float64(sub(out, r.out)) / secs)
		r.at, r.in, r.out = now, in, out
	}
	return &pb.Traffic{
		TrafficIn:  &pb.DataGauge{CumBytes: in, InstBw: r.bwIn},
		TrafficOut: &pb.DataGauge{CumBytes: out, InstBw: r.bwOut},
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func roleOf(d network.Direction) pb.Role {
	if d == network.DirInbound {
		return pb.Role_RESPONDER
	}
	return pb.Role_INITIATOR
}

func roleName(r pb.Role) string {
	if r == pb.Role_RESPONDER {
		return "RESPONDER"
	}
	return "INITIATOR"
}

func addrText(a ma.Multiaddr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// transportID is the text the 2020 Go server put in transport_id: the address's protocol
// names, e.g. ip4+tcp or ip4+udp+quic-v1.
func transportID(a ma.Multiaddr) string {
	if a == nil {
		return ""
	}
	var names []string
	for _, c := range a {
		name := c.Protocol().Name
		if name == "p2p" || name == "certhash" {
			continue
		}
		names = append(names, name)
	}
	return strings.Join(names, "+")
}
