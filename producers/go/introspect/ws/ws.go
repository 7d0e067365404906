// Package ws serves the libp2p introspection protocol (docs/protocol.md) over a WebSocket:
// the framing, the session (HELLO, REQUEST, PUSH_*, UPDATE_CONFIG), retention and the budgets
// that keep a client from costing the host more than its share.
//
// The package knows nothing of go-libp2p: it serves any Source. Package introspect is the
// Source for a go-libp2p host.
package ws

import (
	"time"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// Source is what an Endpoint serves.
type Source interface {
	// Runtime describes the node (implementation, version, platform, peer id, event types).
	Runtime() *pb.Runtime
	// State is taken at the call. It lists connections (and streams) that closed within
	// retention, with their close times. The endpoint sets snapshot_duration_ms per client.
	State(retention time.Duration) *pb.State
	// Subscribe calls fn for every event from now until cancel is called. fn must not block.
	Subscribe(fn func(*pb.Event)) (cancel func())
}

// DefaultListenAddr is loopback: an introspection endpoint shows a node's peers and traffic, so
// it is reachable from elsewhere only when the application says so.
const DefaultListenAddr = "127.0.0.1:0"

// Path is where the endpoint serves (the path the 2020 Go server used).
const Path = "/introspect"

type config struct {
	listenAddr string
}

// Option configures an Endpoint.
type Option func(*config) error

// ListenAddr sets the TCP address to listen on (host:port; port 0 picks a free one).
func ListenAddr(addr string) Option {
	return func(c *config) error { c.listenAddr = addr; return nil }
}

// Endpoint serves one Source to WebSocket clients.
type Endpoint struct {
	src Source
	cfg config
}

// New starts serving src. Close stops it.
func New(src Source, opts ...Option) (*Endpoint, error) {
	cfg := config{listenAddr: DefaultListenAddr}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	// TODO(endpoint): listen and serve.
	return &Endpoint{src: src, cfg: cfg}, nil
}

// Addr is the address the endpoint listens on (host:port), with the port it got.
func (e *Endpoint) Addr() string { return e.cfg.listenAddr }

// URL is the ws:// URL clients connect to.
func (e *Endpoint) URL() string { return "ws://" + e.Addr() + Path }

// Close stops serving and ends every session.
func (e *Endpoint) Close() error { return nil }
