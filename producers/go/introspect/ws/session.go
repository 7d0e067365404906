package ws

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// A session is one client. Its goroutines: the reader (the HTTP handler's goroutine, which
// also runs the commands) and, once the client said HELLO, the pump (pushed States, queued
// events, pings). Writes from both go through wmu; every write has a deadline, so a client
// that does not read costs at most its own goroutines, for at most the idle limit.
type session struct {
	e    *Endpoint
	conn *websocket.Conn
	sink func([]byte) // tests: replaces the connection's writes

	wmu sync.Mutex // one data writer at a time (gorilla's rule)

	evicted bool // guarded by e.mu

	mu          sync.Mutex
	hello       bool
	interval    time.Duration
	retention   time.Duration
	pushState   bool
	pushEvents  bool
	paused      bool
	pauseQ      []queued // States and events held while paused, oldest first
	events      [][]byte // events waiting for the pump
	noticeOwed  bool     // events were dropped: a DISCARDING_EVENTS notice goes first
	coveredFrom uint64   // ms: start of the period the next State covers
	closing     bool
	closeBy     time.Time

	// The reader's own.
	badInARow int
	helloBy   time.Time

	wake      chan struct{} // events queued
	rearm     chan struct{} // push State or interval changed
	done      chan struct{} // the reader has ended
	closeOnce sync.Once
}

type queued struct {
	at   time.Time
	data []byte
}

func newSession(e *Endpoint, conn *websocket.Conn) *session {
	s := &session{
		e:         e,
		conn:      conn,
		interval:  e.cfg.defaultInterval,
		retention: e.cfg.defaultRetention,
		wake:      make(chan struct{}, 1),
		rearm:     make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if e.cfg.helloTimeout > 0 {
		s.helloBy = time.Now().Add(e.cfg.helloTimeout)
	}
	return s
}

func nowMs() uint64 { return uint64(time.Now().UnixMilli()) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ---- reading -----------------------------------------------------------------------------

func (s *session) run() {
	defer s.finish()
	s.conn.SetReadLimit(s.e.cfg.maxCommandBytes) // gorilla refuses only messages longer than this
	s.conn.SetPongHandler(s.onPong)
	for {
		s.setReadDeadline()
		kind, data, err := s.conn.ReadMessage()
		if err != nil {
			s.readFailed(err)
			return
		}
		if s.isClosing() {
			continue // we said goodbye: read on until the client's close frame or closeBy
		}
		if kind == websocket.BinaryMessage {
			s.command(data)
		} else {
			s.bad(0, "commands are binary frames holding a ClientCommand")
		}
		if s.badInARow >= s.e.cfg.maxBadCommands {
			s.e.stats.closedForErrors.Add(1)
			s.close(closePolicy, "too many bad commands")
		}
	}
}

// finish runs when the reader ends: the connection is dropped, which also ends a pump write.
func (s *session) finish() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	close(s.done)
	_ = s.conn.Close()
}

// setReadDeadline bounds the next read: the HELLO deadline, then the idle limit (extended by
// pongs while something is pushed), or closeBy once we said goodbye. Under mu, so close()
// cannot be overwritten by a deadline computed before it.
func (s *session) setReadDeadline() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d time.Time
	switch {
	case s.closing:
		d = s.closeBy
	case !s.hello:
		d = s.helloBy
	case s.e.cfg.idleTimeout > 0:
		d = time.Now().Add(s.e.cfg.idleTimeout)
	}
	_ = s.conn.SetReadDeadline(d)
}

// onPong keeps a streaming client alive: it sends no commands, and that is fine while it
// answers pings. A client that is pushed nothing must send commands to stay.
func (s *session) onPong(string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing && s.hello && (s.pushState || s.pushEvents) && s.e.cfg.idleTimeout > 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.e.cfg.idleTimeout))
	}
	return nil
}

func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.mu.Lock()
		closing, hello := s.closing, s.hello
		s.mu.Unlock()
		switch {
		case closing: // the client did not answer our close frame in time
		case !hello:
			s.e.stats.helloTimeouts.Add(1)
			s.close(closePolicy, "no HELLO in time")
		default:
			s.e.stats.idleTimeouts.Add(1)
			s.close(closePolicy, "idle")
		}
	case errors.Is(err, websocket.ErrReadLimit): // gorilla has sent 1009
		s.e.stats.commandsTooLarge.Add(1)
	}
}

func (s *session) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// close says goodbye with a close frame and gives the client closeWait to answer; the reader
// then ends. Safe from any goroutine; only the first call counts.
func (s *session) close(code int, reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.closeBy = time.Now().Add(closeWait)
		if s.conn != nil {
			_ = s.conn.SetReadDeadline(s.closeBy)
		}
		s.mu.Unlock()
		if s.conn != nil {
			_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), s.closeBy)
		}
	})
}

// ---- writing -----------------------------------------------------------------------------

// send writes one message. A client that does not take it within the idle limit loses its
// connection (gorilla cannot write on after a timed-out write anyway).
func (s *session) send(data []byte) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(data)
}

// writeLocked is send for a caller that holds wmu: the pump decides under wmu whether a State or
// an event may still go out, so nothing pushed follows the OK of a PUSH_DISABLE or PUSH_PAUSE.
func (s *session) writeLocked(data []byte) bool {
	if s.sink != nil {
		s.sink(data)
		return true
	}
	var deadline time.Time
	if s.e.cfg.idleTimeout > 0 {
		deadline = time.Now().Add(s.e.cfg.idleTimeout)
	}
	_ = s.conn.SetWriteDeadline(deadline)
	err := s.conn.WriteMessage(websocket.BinaryMessage, data)
	if err == nil {
		s.e.stats.messagesSent.Add(1)
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.e.stats.idleTimeouts.Add(1)
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		_ = s.conn.Close() // the reader ends on its next read
	}
	return false
}

func (s *session) sendMessage(msg *pb.ServerMessage) bool {
	data, err := encodeMessage(msg)
	if err != nil {
		s.e.stats.encodeFailures.Add(1)
		log.Warn("introspection endpoint: cannot marshal a message", "err", err)
		return false
	}
	return s.send(data)
}

func (s *session) reply(id uint64, errText string, cfg *pb.Configuration) {
	s.sendMessage(response(id, errText, cfg))
}

func (s *session) bad(id uint64, errText string) {
	s.badInARow++
	if s.e.stats.badCommands.Add(1) == 1 {
		log.Warn("introspection endpoint: bad command from a client (logged once)", "error", errText)
	}
	s.reply(id, errText, nil)
}

func (s *session) effectiveConfig() *pb.Configuration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return configMessage(s.interval, s.retention)
}

// ---- commands ----------------------------------------------------------------------------

func (s *session) command(data []byte) {
	cmd, err := decodeCommand(data)
	if err != nil {
		s.bad(0, err.Error())
		return
	}
	id, kind, source := cmd.GetId(), cmd.GetCommand(), cmd.GetSource()
	if kind == pb.ClientCommand_HELLO {
		s.onHello(id, cmd.GetConfig())
		return
	}
	s.mu.Lock()
	hello := s.hello
	s.mu.Unlock()
	if !hello {
		s.bad(id, "the first command must be HELLO")
		return
	}
	switch source {
	case pb.ClientCommand_STATE, pb.ClientCommand_RUNTIME, pb.ClientCommand_EVENTS:
	default:
		s.bad(id, fmt.Sprintf("unknown source %d", source))
		return
	}
	switch kind {
	case pb.ClientCommand_REQUEST:
		s.onRequest(id, source)
	case pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_PUSH_DISABLE:
		if source == pb.ClientCommand_RUNTIME {
			s.bad(id, "the Runtime cannot be pushed; REQUEST it")
			return
		}
		s.onPush(source, kind == pb.ClientCommand_PUSH_ENABLE)
		s.badInARow = 0
		s.reply(id, "", nil)
	case pb.ClientCommand_PUSH_PAUSE:
		s.mu.Lock()
		s.paused = true
		s.mu.Unlock()
		s.badInARow = 0
		s.reply(id, "", nil)
	case pb.ClientCommand_PUSH_RESUME:
		s.badInARow = 0
		s.reply(id, "", nil)
		s.resume()
	case pb.ClientCommand_UPDATE_CONFIG:
		s.mu.Lock()
		s.interval, s.retention = clampConfig(cmd.GetConfig(), s.interval, s.retention)
		s.mu.Unlock()
		signal(s.rearm)
		s.badInARow = 0
		s.reply(id, "", s.effectiveConfig())
	default:
		s.bad(id, fmt.Sprintf("unknown command %d", kind))
	}
}

func (s *session) onHello(id uint64, cfg *pb.Configuration) {
	s.mu.Lock()
	again := s.hello
	s.mu.Unlock()
	if again {
		s.bad(id, "HELLO already received")
		return
	}
	ok, full := s.e.promote(s)
	if full {
		if s.e.stats.clientsRejected.Add(1) == 1 {
			log.Warn("introspection endpoint: client limit reached; refusing more (logged once)", "max_clients", s.e.cfg.maxClients)
		}
		s.reply(id, "client limit reached", nil)
		s.close(closePolicy, "client limit reached")
		return
	}
	if !ok {
		return // evicted or shutting down meanwhile: the session is closing
	}
	s.mu.Lock()
	s.hello = true
	s.coveredFrom = nowMs()
	s.interval, s.retention = clampConfig(cfg, s.interval, s.retention)
	s.mu.Unlock()
	s.badInARow = 0
	if s.conn != nil {
		s.e.wg.Add(1) // the reader is counted, so this cannot race Close's Wait
		go s.pump()
	}
	s.reply(id, "", s.effectiveConfig())
}

func (s *session) onRequest(id uint64, source pb.ClientCommand_Source) {
	switch source {
	case pb.ClientCommand_EVENTS:
		s.bad(id, "REQUEST EVENTS is not supported; use PUSH_ENABLE EVENTS")
	case pb.ClientCommand_STATE:
		data, ok := s.nextState()
		if !ok {
			s.reply(id, "the node could not take a State", nil)
			return
		}
		s.badInARow = 0
		s.send(data)
	default:
		rt, ok := s.runtime()
		if !ok {
			s.reply(id, "the node could not describe itself", nil)
			return
		}
		s.badInARow = 0
		s.sendMessage(serverMessage(rt))
	}
}

func (s *session) onPush(source pb.ClientCommand_Source, on bool) {
	s.mu.Lock()
	rearm := false
	if source == pb.ClientCommand_STATE {
		if s.pushState != on {
			s.pushState = on
			if on { // the first pushed State covers the interval from here
				s.coveredFrom = nowMs()
			}
			rearm = true
		}
	} else {
		s.pushEvents = on
		if !on {
			s.events = nil
		}
	}
	if !s.pushState && !s.pushEvents {
		s.pauseQ = nil
	}
	s.mu.Unlock()
	if rearm {
		signal(s.rearm)
	}
}

// resume sends what was queued while paused (still within retention), then streams again. The
// OK has gone out before; anything queued meanwhile is sent too, in order.
func (s *session) resume() {
	s.mu.Lock()
	horizon := s.e.cfg.clock().Add(-s.retention)
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if len(s.pauseQ) == 0 {
			s.paused = false
			s.mu.Unlock()
			signal(s.wake) // a DISCARDING_EVENTS notice may be owed
			return
		}
		q := s.pauseQ[0]
		s.pauseQ[0] = queued{}
		s.pauseQ = s.pauseQ[1:]
		s.mu.Unlock()
		if !q.at.Before(horizon) && !s.send(q.data) {
			return
		}
	}
}

// queuePaused holds one message for a paused client, pruned to retention and to the cap.
// Called with mu held.
func (s *session) queuePaused(data []byte) {
	now := s.e.cfg.clock()
	s.pauseQ = append(s.pauseQ, queued{at: now, data: data})
	horizon := now.Add(-s.retention)
	for len(s.pauseQ) > 0 && (s.pauseQ[0].at.Before(horizon) || len(s.pauseQ) > s.e.cfg.pauseQueue) {
		s.pauseQ[0] = queued{}
		s.pauseQ = s.pauseQ[1:]
		s.e.stats.pausedPruned.Add(1)
	}
}

// offerEvent queues one event for this client without ever blocking the Source; encode
// marshals the event once for all clients.
func (s *session) offerEvent(encode func() []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pushEvents || s.closing {
		return
	}
	data := encode()
	if len(data) == 0 {
		return
	}
	if s.paused {
		s.queuePaused(data)
		return
	}
	if len(s.events) >= s.e.cfg.eventQueue {
		s.e.stats.eventsDropped.Add(1)
		s.noticeOwed = true
	} else {
		s.events = append(s.events, data)
	}
	signal(s.wake)
}

// ---- what is sent --------------------------------------------------------------------------

// nextState takes a State for this client: snapshot_duration_ms is the time since the previous
// State it was sent (or since HELLO / PUSH_ENABLE STATE), as the schema means and the observer UI
// uses it, and every Connection carries a StreamList.
func (s *session) nextState() ([]byte, bool) {
	s.mu.Lock()
	retention := s.retention
	s.mu.Unlock()
	st, ok := s.takeState(retention)
	if !ok {
		return nil, false
	}
	if st.InstantTs == 0 {
		st.InstantTs = nowMs()
	}
	ensureStreams(st)
	s.mu.Lock()
	if s.coveredFrom != 0 {
		d := uint64(0)
		if st.InstantTs > s.coveredFrom {
			d = st.InstantTs - s.coveredFrom
		}
		st.SnapshotDurationMs = uint32(min(d, 1<<32-1))
	}
	s.coveredFrom = st.InstantTs
	s.mu.Unlock()
	data, err := encodeMessage(serverMessage(st))
	if err != nil {
		s.e.stats.encodeFailures.Add(1)
		log.Warn("introspection endpoint: cannot marshal a State", "err", err)
		return nil, false
	}
	return data, true
}

// takeState calls the Source; a panic there costs this State, not the host.
func (s *session) takeState(retention time.Duration) (st *pb.State, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if s.e.stats.snapshotFailures.Add(1) == 1 {
				log.Error("introspection endpoint: the Source panicked taking a State (logged once)", "panic", fmt.Sprint(r))
			}
			st, ok = nil, false
		}
	}()
	st = s.e.src.State(retention)
	if st == nil {
		st = &pb.State{}
	}
	return st, true
}

func (s *session) runtime() (rt *pb.Runtime, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("introspection endpoint: the Source panicked describing the runtime", "panic", fmt.Sprint(r))
			rt, ok = nil, false
		}
	}()
	rt = s.e.src.Runtime()
	if rt == nil {
		rt = &pb.Runtime{}
	}
	return rt, true
}

// ensureStreams gives every Connection a StreamList, empty if need be: the observer UI reads
// connection.streams.streams unchecked and blanks its page without it (docs/protocol.md §5).
func ensureStreams(st *pb.State) {
	conns := st.GetSubsystems().GetConnections()
	kept := conns[:0]
	for _, c := range conns {
		if c == nil { // proto refuses to marshal a nil element
			continue
		}
		if c.Streams == nil {
			c.Streams = &pb.StreamList{}
		}
		kept = append(kept, c)
	}
	if len(kept) != len(conns) {
		clear(conns[len(kept):])
		st.Subsystems.Connections = kept
	}
}

// pump sends pushed States, queued events and pings, until the reader ends.
func (s *session) pump() {
	defer s.e.wg.Done()
	var timer *time.Timer
	var tick <-chan time.Time
	stop := func() {
		if timer != nil {
			timer.Stop()
			timer, tick = nil, nil
		}
	}
	defer stop()
	var ping <-chan time.Time
	if idle := s.e.cfg.idleTimeout; idle > 0 {
		t := time.NewTicker(idle / 2)
		defer t.Stop()
		ping = t.C
	}
	arm := func() {
		stop()
		s.mu.Lock()
		on, interval := s.pushState, s.interval
		s.mu.Unlock()
		if on {
			timer = time.NewTimer(interval)
			tick = timer.C
		}
	}
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
			s.flushEvents()
		case <-s.rearm:
			arm()
		case <-tick:
			s.pushStateNow()
			arm() // the next one an interval after this one went out, as the Python Endpoint does
		case <-ping:
			_ = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(closeWait))
		}
	}
}

func (s *session) pushStateNow() {
	s.mu.Lock()
	on := s.pushState
	s.mu.Unlock()
	if !on {
		return
	}
	data, ok := s.nextState()
	if !ok {
		return
	}
	s.wmu.Lock() // lock order: wmu, then mu
	defer s.wmu.Unlock()
	s.mu.Lock()
	switch {
	case !s.pushState || s.closing: // disabled while it was taken: the OK is out, so no State after it
		s.mu.Unlock()
	case s.paused:
		s.queuePaused(data)
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		s.writeLocked(data)
	}
}

func (s *session) flushEvents() {
	for {
		s.wmu.Lock()
		s.mu.Lock()
		var data []byte
		switch {
		case s.closing || !s.pushEvents:
		case s.paused: // queued before PUSH_PAUSE, not sent yet: held with what comes while paused
			for _, d := range s.events {
				s.queuePaused(d)
			}
			s.events = nil
		case s.noticeOwed:
			s.noticeOwed = false
			s.e.stats.noticesSent.Add(1)
			data, _ = encodeMessage(serverMessage(&pb.ServerNotice{Kind: pb.ServerNotice_DISCARDING_EVENTS}))
		case len(s.events) > 0:
			data = s.events[0]
			s.events[0] = nil
			s.events = s.events[1:]
		}
		s.mu.Unlock()
		ok := data != nil && s.writeLocked(data)
		s.wmu.Unlock()
		if !ok {
			return
		}
	}
}
