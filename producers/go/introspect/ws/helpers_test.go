package ws

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// fakeSource is a deterministic Source: one connection without a StreamList (the endpoint must
// add it), optional padding to make States large, events published by the test.
type fakeSource struct {
	mu      sync.Mutex
	subs    map[int]func(*pb.Event)
	next    int
	pad     int  // bytes of padding in each State
	panics  bool // State panics
	states  int
	startTs uint64
}

func newFakeSource() *fakeSource {
	return &fakeSource{subs: map[int]func(*pb.Event){}, startTs: nowMs()}
}

func (f *fakeSource) Runtime() *pb.Runtime {
	return &pb.Runtime{
		Implementation: "fake", Version: "1", Platform: "test", PeerId: "12D3KooWfake",
		EventTypes: []*pb.EventType{{Name: "PeerConnecting", PropertyTypes: []*pb.EventType_EventProperty{
			{Name: "peerId", Type: pb.EventType_EventProperty_PEERID}}}},
	}
}

func (f *fakeSource) State(retention time.Duration) *pb.State {
	f.mu.Lock()
	f.states++
	pad, panics := f.pad, f.panics
	f.mu.Unlock()
	if panics {
		panic("state on fire")
	}
	conn := &pb.Connection{Id: []byte{1}, PeerId: "12D3KooWpeer", TransportId: []byte("ip4+tcp")}
	if pad > 0 {
		conn.UserProvidedTags = []string{strings.Repeat("x", pad)}
	}
	return &pb.State{
		InstantTs:  nowMs(),
		StartTs:    f.startTs,
		Subsystems: &pb.Subsystems{Connections: []*pb.Connection{conn}},
	}
}

func (f *fakeSource) Subscribe(fn func(*pb.Event)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.next
	f.next++
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, id)
	}
}

func (f *fakeSource) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeSource) publish(peer string) {
	f.mu.Lock()
	subs := make([]func(*pb.Event), 0, len(f.subs))
	for _, fn := range f.subs {
		subs = append(subs, fn)
	}
	f.mu.Unlock()
	ev := &pb.Event{Type: &pb.EventType{Name: "PeerConnecting"}, Ts: nowMs(), Content: `{"peerId":"` + peer + `"}`}
	for _, fn := range subs {
		fn(ev)
	}
}

func startEndpoint(t *testing.T, src Source, opts ...Option) *Endpoint {
	t.Helper()
	e, err := New(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// client is a minimal introspection client written here, with its own segment decoder (the
// standard library's FNV as the oracle), so the endpoint's framing is checked, not trusted.
// A goroutine reads everything into a channel: gorilla cannot read on after a timed-out read.
type client struct {
	t      *testing.T
	c      *websocket.Conn
	frames chan frame
	done   chan struct{}
}

type frame struct {
	kind int
	data []byte
	err  error
}

func dialConn(url string, rcvbuf int) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if rcvbuf > 0 { // a small receive window, so a client that does not read stalls the server soon
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}}
		d.NetDial = nd.Dial
	}
	c, _, err := d.Dial(url, nil)
	return c, err
}

func dial(t *testing.T, e *Endpoint) *client {
	t.Helper()
	c, err := dialConn(e.URL(), 0)
	if err != nil {
		t.Fatalf("dial %s: %v", e.URL(), err)
	}
	cl := &client{t: t, c: c, frames: make(chan frame, 1024), done: make(chan struct{})}
	go cl.readLoop()
	t.Cleanup(cl.close)
	return cl
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		kind, data, err := c.c.ReadMessage()
		c.frames <- frame{kind, data, err}
		if err != nil {
			return
		}
	}
}

// close drops the connection and waits for the reader.
func (c *client) close() {
	_ = c.c.Close()
	for {
		select {
		case <-c.done:
			return
		case <-c.frames: // make room for the reader's last frame
		}
	}
}

func cmd(id uint64, kind pb.ClientCommand_Command, source pb.ClientCommand_Source) *pb.ClientCommand {
	return &pb.ClientCommand{Version: &pb.Version{Version: 1}, Id: id, Command: kind, Source: source}
}

func withConfig(c *pb.ClientCommand, intervalMs, retentionMs uint64) *pb.ClientCommand {
	c.Config = &pb.Configuration{StateSnapshotIntervalMs: intervalMs, RetentionPeriodMs: retentionMs}
	return c
}

func (c *client) send(command *pb.ClientCommand) {
	c.t.Helper()
	data, err := proto.Marshal(command)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.BinaryMessage, data)
}

func (c *client) sendRaw(kind int, data []byte) {
	c.t.Helper()
	if err := c.c.WriteMessage(kind, data); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

var errSilence = errors.New("nothing received")

func (c *client) recvRaw(timeout time.Duration) (int, []byte, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case f := <-c.frames:
		if f.err != nil {
			c.frames <- f // the connection is over: every later read sees it too
		}
		return f.kind, f.data, f.err
	case <-timer.C:
		return 0, nil, errSilence
	}
}

// decodeFrame checks one server message's framing: version 1, checksum, length, one segment.
func decodeFrame(data []byte) (*pb.ServerMessage, error) {
	if len(data) < 12 {
		return nil, errors.New("frame shorter than a header")
	}
	version := binary.LittleEndian.Uint32(data[0:])
	sum := binary.LittleEndian.Uint32(data[4:])
	length := binary.LittleEndian.Uint32(data[8:])
	payload := data[12:]
	if version != 1 || int(length) != len(payload) {
		return nil, errors.New("bad header")
	}
	h := fnv.New32a()
	h.Write(payload)
	if h.Sum32() != sum {
		return nil, errors.New("checksum mismatch")
	}
	msg := &pb.ServerMessage{}
	if err := proto.Unmarshal(payload, msg); err != nil {
		return nil, err
	}
	if msg.GetVersion().GetVersion() != 1 {
		return nil, errors.New("ServerMessage.version is not 1")
	}
	return msg, nil
}

func (c *client) recv() *pb.ServerMessage {
	c.t.Helper()
	return c.recvWithin(5 * time.Second)
}

func (c *client) recvWithin(timeout time.Duration) *pb.ServerMessage {
	c.t.Helper()
	kind, data, err := c.recvRaw(timeout)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	if kind != websocket.BinaryMessage {
		c.t.Fatalf("server sent frame type %d, want binary", kind)
	}
	msg, err := decodeFrame(data)
	if err != nil {
		c.t.Fatalf("bad frame %x: %v", data, err)
	}
	return msg
}

// expectNothing fails if the server sends anything within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	if _, data, err := c.recvRaw(d); err != errSilence {
		c.t.Fatalf("expected silence, got %x (%v)", data, err)
	}
}

// expectClose reads until the server's close frame and returns its code.
func (c *client) expectClose(timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, _, err := c.recvRaw(time.Until(deadline))
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		c.t.Fatalf("expected a close frame, got %v", err)
	}
}

func (c *client) response(id uint64) *pb.CommandResponse {
	c.t.Helper()
	msg := c.recv()
	r := msg.GetResponse()
	if r == nil || r.Id != id {
		c.t.Fatalf("expected the response to %d, got %v", id, msg)
	}
	return r
}

func (c *client) ok(id uint64) *pb.CommandResponse {
	c.t.Helper()
	r := c.response(id)
	if r.Result != pb.CommandResponse_OK {
		c.t.Fatalf("command %d: %v", id, r)
	}
	return r
}

func (c *client) err(id uint64) *pb.CommandResponse {
	c.t.Helper()
	r := c.response(id)
	if r.Result != pb.CommandResponse_ERR || r.Error == "" {
		c.t.Fatalf("command %d: want ERR, got %v", id, r)
	}
	return r
}

func (c *client) hello(id uint64) *pb.CommandResponse {
	c.t.Helper()
	c.send(cmd(id, pb.ClientCommand_HELLO, 0))
	return c.ok(id)
}

// waitFor polls cond until it holds or fails the test loudly after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onlySession returns the endpoint's single active session.
func onlySession(t *testing.T, e *Endpoint) *session {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.active) != 1 {
		t.Fatalf("%d active sessions, want 1", len(e.active))
	}
	for s := range e.active {
		return s
	}
	return nil
}

func eventPeer(t *testing.T, msg *pb.ServerMessage) string {
	t.Helper()
	ev := msg.GetEvent()
	if ev == nil {
		t.Fatalf("expected an event, got %v", msg)
	}
	c := ev.Content
	const prefix = `{"peerId":"`
	if !strings.HasPrefix(c, prefix) || !strings.HasSuffix(c, `"}`) {
		t.Fatalf("unexpected event content %q", c)
	}
	return c[len(prefix) : len(c)-2]
}

func decodeFrameChecksum(b []byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}
