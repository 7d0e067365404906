// Package ws serves the libp2p introspection protocol (docs/protocol.md) over a WebSocket:
// the framing, the session (HELLO, REQUEST, PUSH_*, UPDATE_CONFIG), retention and the budgets
// that keep a client from costing the host more than its share.
//
// The package knows nothing of go-libp2p: it serves any Source. Package introspect is the
// Source for a go-libp2p host.
//
// The behaviour matches this project's Python Endpoint (exporter/introspector/endpoint.py)
// message for message and byte for byte; docs/go-producer.md lists the budgets.
package ws

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	// gorilla/websocket rather than coder/websocket: go-libp2p already depends on it (its
	// websocket transport), so an application gains no module, and it gives what the budgets
	// need: a read limit that accepts exactly its value, per-write deadlines, and
	// WriteControl/Close that are safe to call from another goroutine (eviction, Close).
	"github.com/gorilla/websocket"
	"github.com/libp2p/go-libp2p/gologshim"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// log is go-libp2p's: slog, levels from GOLOG_LOG_LEVEL, joined to go-log when the application does.
var log = gologshim.Logger("introspect/ws")

// Source is what an Endpoint serves.
type Source interface {
	// Runtime describes the node (implementation, version, platform, peer id, event types).
	Runtime() *pb.Runtime
	// State is taken at the call. It lists connections (and streams) that closed within
	// retention, with their close times. The endpoint sets snapshot_duration_ms per client.
	//
	// The returned State belongs to the caller: the endpoint writes snapshot_duration_ms
	// into it and, as a safety net, an empty StreamList into any Connection that lacks one
	// (the observer UI needs the field). A Source that shares messages between calls must
	// therefore always set Connection.Streams itself.
	State(retention time.Duration) *pb.State
	// Subscribe calls fn for every event from now until cancel is called. fn must not block.
	Subscribe(fn func(*pb.Event)) (cancel func())
}

// DefaultListenAddr is loopback: an introspection endpoint shows a node's peers and traffic, so
// it is reachable from elsewhere only when the application says so.
const DefaultListenAddr = "127.0.0.1:0"

// Path is where the endpoint serves (the path the 2020 Go server used).
const Path = "/introspect"

// WebSocket close codes the endpoint uses (RFC 6455 §7.4.1), with the Python Endpoint's reasons.
const (
	// No HELLO in time, idle, not reading, bad commands, evicted from the pending pool, client
	// limit reached at HELLO.
	closePolicy    = websocket.ClosePolicyViolation
	closeGoingAway = websocket.CloseGoingAway // Close()
)

// Endpoint serves one Source to WebSocket clients.
type Endpoint struct {
	src      Source
	cfg      config
	ln       net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader
	cancel   func() // the event subscription

	mu      sync.Mutex
	closed  bool
	pending []*session // not said HELLO yet, oldest first
	active  map[*session]struct{}
	wg      sync.WaitGroup // the server, every handler and every session goroutine

	closeOnce sync.Once
	stats     counters
}

// New starts serving src. Close stops it.
func New(src Source, opts ...Option) (*Endpoint, error) {
	if src == nil {
		return nil, errors.New("ws: nil Source")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.listenAddr)
	if err != nil {
		return nil, fmt.Errorf("ws: listen on %s: %w", cfg.listenAddr, err)
	}
	e := &Endpoint{src: src, cfg: cfg, ln: ln, active: make(map[*session]struct{})}
	e.upgrader = websocket.Upgrader{
		HandshakeTimeout: closeWait * 10,
		// The observer UI is a web page served from another origin than the node, so the
		// Origin header never matches; like the Python Endpoint, any origin is accepted. The
		// data is read-only and the default listen address is loopback.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, e.serveWS)
	headerTimeout := cfg.helloTimeout
	if headerTimeout == 0 {
		headerTimeout = DefaultHelloTimeout
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	e.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: headerTimeout, // a connection that never finishes its upgrade request
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog, // accept errors and the like
	}
	e.cancel = src.Subscribe(e.onEvent)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("introspection endpoint stopped serving", "err", err)
		}
	}()
	log.Info("introspection endpoint listening", "url", e.URL())
	return e, nil
}

// Addr is the address the endpoint listens on (host:port), with the port it got.
func (e *Endpoint) Addr() string { return e.ln.Addr().String() }

// URL is the ws:// URL clients connect to.
func (e *Endpoint) URL() string { return "ws://" + e.Addr() + Path }

// Close stops serving and ends every session: each client gets a close frame (1001) and up to a
// second to answer it. Close returns when every goroutine of the endpoint has ended.
func (e *Endpoint) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		sessions := append([]*session(nil), e.pending...)
		for s := range e.active {
			sessions = append(sessions, s)
		}
		e.mu.Unlock()
		if e.cancel != nil {
			e.cancel()
		}
		err = e.srv.Close() // the listener and connections not yet upgraded
		for _, s := range sessions {
			e.closeAsync(s, closeGoingAway, "server shutting down")
		}
		e.wg.Wait()
	})
	return err
}

// Clients reports how many sessions have said HELLO and how many have not (yet).
func (e *Endpoint) Clients() (active, pending int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.active), len(e.pending)
}

func (e *Endpoint) serveWS(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		http.Error(w, "introspection endpoint closed", http.StatusServiceUnavailable)
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()

	conn, err := e.upgrader.Upgrade(w, r, nil) // on error the upgrader has answered
	if err != nil {
		return
	}
	s := newSession(e, conn)
	if !e.admit(s) {
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(closeGoingAway, "server shutting down"), time.Now().Add(closeWait))
		_ = conn.Close()
		return
	}
	s.run()
	e.remove(s)
}

// admit puts a new connection in the pending pool, closing the oldest pending one when the
// pool is full (issue 25: silent connections must not lock real clients out).
func (e *Endpoint) admit(s *session) bool {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return false
	}
	e.stats.clientsTotal.Add(1)
	e.pending = append(e.pending, s)
	var evicted *session
	if len(e.pending) > e.cfg.maxPending {
		evicted = e.pending[0]
		e.pending[0] = nil
		e.pending = e.pending[1:]
		evicted.evicted = true
	}
	e.mu.Unlock()
	if evicted != nil {
		if e.stats.evicted.Add(1) == 1 {
			log.Warn("introspection endpoint: connections waiting for HELLO fill the pending pool; closing the oldest for each new one (logged once)", "max_pending", e.cfg.maxPending)
		}
		e.closeAsync(evicted, closePolicy, "too many connections waiting for HELLO")
	}
	return true
}

// promote moves a session that said HELLO from the pending pool to the main pool. It reports
// false when the main pool is full (the session then leaves the pending pool too: it is being
// refused), or when the session was evicted meanwhile.
func (e *Endpoint) promote(s *session) (ok, full bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.evicted || e.closed {
		return false, false
	}
	e.dropPending(s)
	if len(e.active) >= e.cfg.maxClients {
		return false, true
	}
	e.active[s] = struct{}{}
	return true, false
}

func (e *Endpoint) remove(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropPending(s)
	delete(e.active, s)
}

func (e *Endpoint) dropPending(s *session) {
	for i, p := range e.pending {
		if p == s {
			copy(e.pending[i:], e.pending[i+1:])
			e.pending[len(e.pending)-1] = nil
			e.pending = e.pending[:len(e.pending)-1]
			return
		}
	}
}

// closeAsync closes a session from outside its goroutines: writing the close frame can wait on
// a write the client does not read, and the caller must not.
func (e *Endpoint) closeAsync(s *session, code int, reason string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		s.close(code, reason)
	}()
}

// onEvent fans one event out to the sessions that asked for events. It runs on the Source's
// goroutine, so it only queues (bounded) and marshals at most once.
func (e *Endpoint) onEvent(ev *pb.Event) {
	if ev == nil {
		return
	}
	e.mu.Lock()
	sessions := make([]*session, 0, len(e.active))
	for s := range e.active {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	var data []byte
	encode := func() []byte {
		if data == nil {
			var err error
			if data, err = encodeMessage(serverMessage(ev)); err != nil {
				e.stats.encodeFailures.Add(1)
				log.Warn("introspection endpoint: cannot marshal an event", "err", err)
				data = []byte{}
			}
		}
		return data
	}
	for _, s := range sessions {
		s.offerEvent(encode)
	}
}

// Stats counts what the endpoint did since it started.
type Stats struct {
	ClientsTotal     uint64 // connections upgraded to a WebSocket
	ClientsRejected  uint64 // HELLOs refused because MaxClients sessions were active
	Evicted          uint64 // pending connections closed to make room for a newer one
	HelloTimeouts    uint64 // closed for not saying HELLO in time
	IdleTimeouts     uint64 // closed for idling, not answering pings or not reading
	CommandsTooLarge uint64 // closed for a message over MaxCommandBytes
	BadCommands      uint64 // ERR answers to malformed or misplaced commands
	ClosedForErrors  uint64 // closed after MaxBadCommands bad commands in a row
	MessagesSent     uint64
	EventsDropped    uint64 // events a client's full queue could not take
	NoticesSent      uint64 // DISCARDING_EVENTS notices
	PausedPruned     uint64 // queued messages dropped from a paused client's queue
	SnapshotFailures uint64 // States the Source failed to produce (a panic), skipped
	EncodeFailures   uint64 // messages that could not be marshalled, skipped
}

type counters struct {
	clientsTotal, clientsRejected, evicted, helloTimeouts, idleTimeouts, commandsTooLarge,
	badCommands, closedForErrors, messagesSent, eventsDropped, noticesSent, pausedPruned,
	snapshotFailures, encodeFailures atomic.Uint64
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	c := &e.stats
	return Stats{
		ClientsTotal: c.clientsTotal.Load(), ClientsRejected: c.clientsRejected.Load(),
		Evicted: c.evicted.Load(), HelloTimeouts: c.helloTimeouts.Load(),
		IdleTimeouts: c.idleTimeouts.Load(), CommandsTooLarge: c.commandsTooLarge.Load(),
		BadCommands: c.badCommands.Load(), ClosedForErrors: c.closedForErrors.Load(),
		MessagesSent: c.messagesSent.Load(), EventsDropped: c.eventsDropped.Load(),
		NoticesSent: c.noticesSent.Load(), PausedPruned: c.pausedPruned.Load(),
		SnapshotFailures: c.snapshotFailures.Load(), EncodeFailures: c.encodeFailures.Load(),
	}
}
