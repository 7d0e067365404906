// Package introspect makes a go-libp2p host introspectable: it is the ws.Source for one host,
// assembling the introspection protocol's State (connections, streams, traffic, the peerstore
// extension, and a DHT part from package introspect/dht) and its Events (the host's event bus
// and connection notifications), and serves them with a ws.Endpoint.
//
// Every field is measured or left unset: see docs/go-producer.md for which go-libp2p API feeds
// which field, and what New(host) cannot fill without a Probe installed at construction.
package introspect

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/ws"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// DefaultRetention is how long closed connections and streams stay in States (the protocol's
// largest retention period).
const DefaultRetention = 120 * time.Second

// Provider adds a subsystem's part to every State; package introspect/dht has one.
type Provider interface {
	// EventTypes are the events the provider publishes, declared in the Runtime.
	EventTypes() []*pb.EventType
	// Start is called once by New; the provider publishes its events through pub.
	Start(pub Publisher)
	// Fill adds the provider's part to st (taken at now).
	Fill(st *pb.State, now time.Time)
}

// Publisher takes events from providers.
type Publisher interface {
	// Publish sends an event of a declared type; content is marshalled as a JSON object.
	Publish(name string, content map[string]any)
}

type config struct {
	listenAddr string
	serve      bool
	retention  time.Duration
	probe      *Probe
	providers  []Provider
	wsOpts     []ws.Option
	eventBus   bool
}

// Option configures an Introspector.
type Option func(*config) error

// ListenAddr sets the endpoint's TCP address (host:port; default ws.DefaultListenAddr, loopback).
func ListenAddr(addr string) Option {
	return func(c *config) error { c.listenAddr = addr; return nil }
}

// NoEndpoint makes New serve nothing: the application serves the Introspector (a ws.Source) itself.
func NoEndpoint() Option {
	return func(c *config) error { c.serve = false; return nil }
}

// EndpointOptions are passed to ws.New.
func EndpointOptions(opts ...ws.Option) Option {
	return func(c *config) error { c.wsOpts = append(c.wsOpts, opts...); return nil }
}

// Retention is how long closed connections and streams are kept (at most DefaultRetention is
// ever asked for by a client; longer costs memory for nothing).
func Retention(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("introspect: retention %v must be positive", d)
		}
		c.retention = d
		return nil
	}
}

// WithProbe gives New the probe installed in libp2p.New (Probe.Option): connection open times
// on the wire, exact stream close times and protocols, and traffic.
func WithProbe(p *Probe) Option {
	return func(c *config) error {
		if p == nil {
			return errors.New("introspect: WithProbe(nil)")
		}
		c.probe = p
		return nil
	}
}

// WithProvider adds a subsystem provider (for example introspect/dht's).
func WithProvider(p Provider) Option {
	return func(c *config) error {
		if p == nil {
			return errors.New("introspect: WithProvider(nil)")
		}
		c.providers = append(c.providers, p)
		return nil
	}
}

// NoEventBus leaves the host's event bus unsubscribed (its events are then not published).
func NoEventBus() Option {
	return func(c *config) error { c.eventBus = false; return nil }
}

// Introspector is the ws.Source for one go-libp2p host.
type Introspector struct {
	h       host.Host
	cfg     config
	start   time.Time
	runtime *pb.Runtime

	conns *tracker
	ps    *peerstoreSampler
	ev    *events
	ep    *ws.Endpoint

	closeOnce sync.Once
	stop      []func()
}

var _ ws.Source = (*Introspector)(nil)
var _ Publisher = (*Introspector)(nil)

// New makes h introspectable and, unless NoEndpoint, serves it on a ws.Endpoint (loopback by
// default). Close stops both; it does not close the host.
func New(h host.Host, opts ...Option) (*Introspector, error) {
	if h == nil {
		return nil, errors.New("introspect: nil host")
	}
	cfg := config{listenAddr: ws.DefaultListenAddr, serve: true, retention: DefaultRetention, eventBus: true}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	in := &Introspector{h: h, cfg: cfg, start: time.Now()}
	in.ev = newEvents()
	in.conns = newTracker(h, cfg.probe, cfg.retention, in)
	in.ps = newPeerstoreSampler(h.Peerstore())
	types := append(baseEventTypes(), busEventTypes()...)
	for _, p := range cfg.providers {
		types = append(types, p.EventTypes()...)
	}
	in.runtime = &pb.Runtime{
		Implementation: "go-libp2p",
		Version:        libp2pVersion(),
		Platform:       fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH),
		PeerId:         h.ID().String(),
		EventTypes:     types,
	}
	in.stop = append(in.stop, in.conns.attach())
	if cfg.eventBus {
		stop, err := subscribeBus(h.EventBus(), in)
		if err != nil {
			in.closeHooks()
			return nil, err
		}
		in.stop = append(in.stop, stop)
	}
	for _, p := range cfg.providers {
		p.Start(in)
	}
	if cfg.serve {
		ep, err := ws.New(in, append([]ws.Option{ws.ListenAddr(cfg.listenAddr)}, cfg.wsOpts...)...)
		if err != nil {
			in.closeHooks()
			return nil, err
		}
		in.ep = ep
	}
	return in, nil
}

// Endpoint is the endpoint New started (nil with NoEndpoint).
func (in *Introspector) Endpoint() *ws.Endpoint { return in.ep }

// URL is the endpoint's ws:// URL ("" with NoEndpoint).
func (in *Introspector) URL() string {
	if in.ep == nil {
		return ""
	}
	return in.ep.URL()
}

// Close stops the endpoint and unhooks from the host.
func (in *Introspector) Close() error {
	var err error
	in.closeOnce.Do(func() {
		if in.ep != nil {
			err = in.ep.Close()
		}
		in.closeHooks()
	})
	return err
}

func (in *Introspector) closeHooks() {
	for i := len(in.stop) - 1; i >= 0; i-- {
		in.stop[i]()
	}
	in.stop = nil
}

// Runtime implements ws.Source.
func (in *Introspector) Runtime() *pb.Runtime { return proto.Clone(in.runtime).(*pb.Runtime) }

// State implements ws.Source: connections (open, and closed within retention), node traffic,
// the peerstore extension and every provider's part, taken now.
func (in *Introspector) State(retention time.Duration) *pb.State {
	now := time.Now()
	if retention <= 0 || retention > in.cfg.retention {
		retention = in.cfg.retention
	}
	st := &pb.State{
		Subsystems: &pb.Subsystems{},
		InstantTs:  ms(now),
		StartTs:    ms(in.start),
	}
	st.Subsystems.Connections = in.conns.snapshot(now, retention)
	st.Traffic = in.conns.nodeTraffic(now)
	st.Subsystems.Peerstore = in.ps.sample()
	for _, p := range in.cfg.providers {
		p.Fill(st, now)
	}
	return st
}

// Stats are counts of what the introspector could not report.
type Stats struct {
	// UnattributedStreams began and ended between two States on a peer with several
	// connections: their connection is unknown, so no State lists them.
	UnattributedStreams uint64
	// LostStreamEnds are stream ends the probe dropped because no State collected them
	// (it keeps the newest 8192).
	LostStreamEnds uint64
}

// Stats reads the counts.
func (in *Introspector) Stats() Stats {
	in.conns.mu.Lock()
	s := Stats{UnattributedStreams: in.conns.unattributed}
	in.conns.mu.Unlock()
	if p := in.cfg.probe; p != nil {
		p.mu.Lock()
		s.LostStreamEnds = p.lost
		p.mu.Unlock()
	}
	return s
}

// Subscribe implements ws.Source.
func (in *Introspector) Subscribe(fn func(*pb.Event)) (cancel func()) { return in.ev.subscribe(fn) }

// Publish implements Publisher.
func (in *Introspector) Publish(name string, content map[string]any) {
	in.ev.publish(name, content)
}

// libp2pVersion is the go-libp2p module version this binary was built with ("" when the
// binary carries no build information).
func libp2pVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/libp2p/go-libp2p" {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return ""
}

func ms(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	v := t.UnixMilli()
	if v < 0 {
		return 0
	}
	return uint64(v)
}
