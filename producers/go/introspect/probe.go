package introspect

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
)

// Probe holds what only construction can give an introspector: a resource manager that sees a
// connection when it opens on the wire (before the handshake) and a stream scope's protocol and
// end, and a bandwidth reporter with exact, unlagged byte counts per peer. Create it before
// libp2p.New, pass Probe.Option() to libp2p.New and the Probe to New with WithProbe.
type Probe struct {
	inner network.ResourceManager
	bw    *Bandwidth

	streamSeq atomic.Uint64

	mu   sync.Mutex
	done []*streamScope // stream scopes that ended, collected by the next State
	lost uint64         // ended scopes dropped because nobody collected them in time
}

// maxPendingDone bounds the stream ends waiting for a State (a host with no client attached
// still ends streams: keep the newest).
const maxPendingDone = 8192

// ProbeOption configures a Probe.
type ProbeOption func(*Probe) error

// WrapResourceManager makes the probe wrap rm instead of a resource manager built with
// go-libp2p's default limits. Give it the manager you would have passed to
// libp2p.ResourceManager (libp2p.New accepts only one resource manager).
func WrapResourceManager(rm network.ResourceManager) ProbeOption {
	return func(p *Probe) error {
		if rm == nil {
			return errors.New("introspect: WrapResourceManager(nil)")
		}
		p.inner = rm
		return nil
	}
}

// NewProbe creates a probe. Without WrapResourceManager it wraps a resource manager with the
// limits libp2p.New would have used (rcmgr.DefaultLimits, libp2p.SetDefaultServiceLimits, auto-scaled).
func NewProbe(opts ...ProbeOption) (*Probe, error) {
	p := &Probe{bw: NewBandwidth()}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	if p.inner == nil {
		limits := rcmgr.DefaultLimits
		libp2p.SetDefaultServiceLimits(&limits)
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
		if err != nil {
			return nil, err
		}
		p.inner = rm
	}
	return p, nil
}

// Option is the libp2p.New option that installs the probe's resource manager and bandwidth
// reporter. It conflicts with libp2p.ResourceManager and libp2p.BandwidthReporter (use
// WrapResourceManager for the first; Bandwidth() forwards to a metrics.BandwidthCounter).
func (p *Probe) Option() libp2p.Option {
	return libp2p.ChainOptions(
		libp2p.ResourceManager(p.ResourceManager()),
		libp2p.BandwidthReporter(p.bw),
	)
}

// ResourceManager is the wrapping resource manager (for applications that assemble options themselves).
func (p *Probe) ResourceManager() network.ResourceManager {
	if l, ok := p.inner.(connLimiter); ok {
		return &limitedResourceManager{resourceManager{ResourceManager: p.inner, probe: p}, l}
	}
	return &resourceManager{ResourceManager: p.inner, probe: p}
}

// Bandwidth is the probe's bandwidth reporter.
func (p *Probe) Bandwidth() *Bandwidth { return p.bw }

func (p *Probe) streamEnded(s *streamScope) {
	p.mu.Lock()
	if len(p.done) >= maxPendingDone {
		copy(p.done, p.done[1:])
		p.done = p.done[:len(p.done)-1]
		p.lost++
	}
	p.done = append(p.done, s)
	p.mu.Unlock()
}

func (p *Probe) takeEnded() []*streamScope {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.done
	p.done = nil
	return out
}

// connLimiter is what libp2p.New asks a resource manager for (connmgr.GetConnLimiter), to warn
// when the connection manager's high water exceeds it; forwarded when the wrapped one has it.
type connLimiter interface{ GetConnLimit() int }

// resourceManager forwards every method to the wrapped manager; it only looks at the scopes
// it hands out.
type resourceManager struct {
	network.ResourceManager
	probe *Probe
}

type limitedResourceManager struct {
	resourceManager
	connLimiter
}

func (r *resourceManager) OpenConnection(dir network.Direction, usefd bool, endpoint ma.Multiaddr) (network.ConnManagementScope, error) {
	at := time.Now()
	s, err := r.ResourceManager.OpenConnection(dir, usefd, endpoint)
	if err != nil {
		return nil, err
	}
	return &connScope{ConnManagementScope: s, opened: at}, nil
}

func (r *resourceManager) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	at := time.Now()
	s, err := r.ResourceManager.OpenStream(p, dir)
	if err != nil {
		return nil, err
	}
	return &streamScope{
		StreamManagementScope: s,
		probe:                 r.probe,
		seq:                   r.probe.streamSeq.Add(1),
		peer:                  p,
		dir:                   dir,
		opened:                at,
	}, nil
}

// connScope is a connection's scope; swarm.Conn.Scope() returns it, which links the
// connection to the moment its scope was opened (before the transport's handshake).
type connScope struct {
	network.ConnManagementScope
	opened time.Time
}

// streamScope is a stream's scope; swarm.Stream.Scope() returns it. It sees the negotiated
// protocol and the stream's end (Done is called when the swarm removes the stream).
type streamScope struct {
	network.StreamManagementScope
	probe  *Probe
	seq    uint64
	peer   peer.ID
	dir    network.Direction
	opened time.Time

	proto    atomic.Pointer[protocol.ID]
	closed   atomic.Int64 // unix ms; 0 while open
	recorded atomic.Bool  // a State already holds this stream (found on its connection)
}

func (s *streamScope) SetProtocol(proto protocol.ID) error {
	err := s.StreamManagementScope.SetProtocol(proto)
	if err == nil {
		s.proto.Store(&proto)
	}
	return err
}

func (s *streamScope) Done() {
	if s.closed.CompareAndSwap(0, time.Now().UnixMilli()) {
		s.probe.streamEnded(s)
	}
	s.StreamManagementScope.Done()
}

func (s *streamScope) protocol() string {
	if p := s.proto.Load(); p != nil {
		return string(*p)
	}
	return ""
}

// Bandwidth is a metrics.Reporter: it forwards everything to a metrics.BandwidthCounter (so the
// application keeps go-libp2p's own per-peer and per-protocol meters) and keeps exact byte
// totals, per peer and for the node, that a flow meter's once-a-second sweep would lag.
type Bandwidth struct {
	*metrics.BandwidthCounter

	in, out atomic.Uint64
	peers   sync.Map // peer.ID -> *peerBytes
}

type peerBytes struct{ in, out atomic.Uint64 }

// NewBandwidth returns a reporter with a fresh metrics.BandwidthCounter inside.
func NewBandwidth() *Bandwidth {
	return &Bandwidth{BandwidthCounter: metrics.NewBandwidthCounter()}
}

var _ metrics.Reporter = (*Bandwidth)(nil)

func (b *Bandwidth) LogSentMessage(size int64) {
	b.BandwidthCounter.LogSentMessage(size)
	if size > 0 {
		b.out.Add(uint64(size))
	}
}

func (b *Bandwidth) LogRecvMessage(size int64) {
	b.BandwidthCounter.LogRecvMessage(size)
	if size > 0 {
		b.in.Add(uint64(size))
	}
}

func (b *Bandwidth) LogSentMessageStream(size int64, proto protocol.ID, p peer.ID) {
	b.BandwidthCounter.LogSentMessageStream(size, proto, p)
	if size > 0 {
		b.peer(p).out.Add(uint64(size))
	}
}

func (b *Bandwidth) LogRecvMessageStream(size int64, proto protocol.ID, p peer.ID) {
	b.BandwidthCounter.LogRecvMessageStream(size, proto, p)
	if size > 0 {
		b.peer(p).in.Add(uint64(size))
	}
}

func (b *Bandwidth) peer(p peer.ID) *peerBytes {
	if v, ok := b.peers.Load(p); ok {
		return v.(*peerBytes)
	}
	v, _ := b.peers.LoadOrStore(p, new(peerBytes))
	return v.(*peerBytes)
}

// Totals are the stream bytes the node read and wrote since the reporter was created.
func (b *Bandwidth) Totals() (in, out uint64) { return b.in.Load(), b.out.Load() }

// PeerTotals are the stream bytes read from and written to p since the reporter was created.
func (b *Bandwidth) PeerTotals(p peer.ID) (in, out uint64) {
	v, ok := b.peers.Load(p)
	if !ok {
		return 0, 0
	}
	pb := v.(*peerBytes)
	return pb.in.Load(), pb.out.Load()
}

// forget drops p's counts (the introspector calls it once p has had no connection for the
// retention period, so the map follows the peers the host talks to now).
func (b *Bandwidth) forget(p peer.ID) { b.peers.Delete(p) }

// snapshot is every peer's counts now.
func (b *Bandwidth) snapshot() map[peer.ID][2]uint64 {
	out := map[peer.ID][2]uint64{}
	b.peers.Range(func(k, v any) bool {
		pb := v.(*peerBytes)
		out[k.(peer.ID)] = [2]uint64{pb.in.Load(), pb.out.Load()}
		return true
	})
	return out
}
