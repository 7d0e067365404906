package ws

import (
	"bytes"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// docs/protocol.md §2, the worked example: HELLO reply OK, id 1, retention 120000 ms, interval 1000 ms.
const helloReplyHex = "01000000a65a0405110000000a0208012a0b0801220708c0a90710e807"

func TestHelloReplyIsTheWorkedExampleByteForByte(t *testing.T) {
	want, _ := hex.DecodeString(helloReplyHex)
	got, err := encodeMessage(response(1, "", configMessage(DefaultInterval, DefaultRetention)))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("encoded\n got %x (%v)\nwant %x", got, err, want)
	}

	e := startEndpoint(t, newFakeSource())
	c := dial(t, e)
	// the observer UI sends an empty Version; the server ignores it
	data, _ := proto.Marshal(&pb.ClientCommand{Id: 1, Command: pb.ClientCommand_HELLO})
	c.sendRaw(websocket.BinaryMessage, data)
	kind, frame, err := c.recvRaw(5 * time.Second)
	if err != nil || kind != websocket.BinaryMessage || !bytes.Equal(frame, want) {
		t.Fatalf("on the wire: type %d %x (%v), want binary %x", kind, frame, err, want)
	}
}

func TestFNV1a32MatchesTheStandardLibrary(t *testing.T) {
	for _, in := range []string{"", "a", "foobar", strings.Repeat("\xff\x00", 1000)} {
		want := decodeFrameChecksum([]byte(in))
		if got := fnv1a32([]byte(in)); got != want {
			t.Errorf("fnv1a32(%q) = %#x, want %#x", in, got, want)
		}
	}
	if got := fnv1a32(mustHex(t, helloReplyHex)[12:]); got != 0x05045aa6 {
		t.Errorf("worked example checksum %#x", got)
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCommandsBeforeHelloGetErrAndTheSessionStays(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	c := dial(t, e)
	c.send(cmd(7, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE))
	if r := c.err(7); !strings.Contains(r.Error, "HELLO") {
		t.Fatalf("error %q does not mention HELLO", r.Error)
	}
	c.hello(8)
	c.send(cmd(9, pb.ClientCommand_HELLO, 0))
	c.err(9)
	c.send(cmd(10, pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME))
	if rt := c.recv().GetRuntime(); rt.GetImplementation() != "fake" {
		t.Fatalf("runtime %v", rt)
	}
}

func TestRequestAnswersWithTheMessageItself(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	c := dial(t, e)
	c.hello(1)
	c.send(cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME))
	rt := c.recv().GetRuntime()
	if rt.GetPeerId() != "12D3KooWfake" || len(rt.GetEventTypes()) != 1 {
		t.Fatalf("runtime %v", rt)
	}
	c.send(cmd(3, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE))
	st := c.recv().GetState()
	if st == nil || st.InstantTs < st.StartTs || st.StartTs == 0 {
		t.Fatalf("state %v", st)
	}
	if conns := st.GetSubsystems().GetConnections(); len(conns) != 1 || conns[0].PeerId != "12D3KooWpeer" {
		t.Fatalf("connections %v", conns)
	}
	c.send(cmd(4, pb.ClientCommand_REQUEST, pb.ClientCommand_EVENTS))
	c.err(4)
}

func TestConfigDefaultsAndLimitsInHelloAndUpdateConfig(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	check := func(cfg *pb.Configuration, interval, retention uint64) {
		t.Helper()
		if cfg.GetStateSnapshotIntervalMs() != interval || cfg.GetRetentionPeriodMs() != retention {
			t.Fatalf("effective config %v, want interval %d retention %d", cfg, interval, retention)
		}
	}
	a := dial(t, e)
	check(a.hello(1).EffectiveConfig, 1000, 120000)

	c := dial(t, e)
	c.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 2000, 120000)) // the observer UI's handshake
	check(c.ok(1).EffectiveConfig, 2000, 120000)
	c.send(withConfig(cmd(2, pb.ClientCommand_UPDATE_CONFIG, 0), 100, 999999))
	check(c.ok(2).EffectiveConfig, 500, 120000)
	c.send(withConfig(cmd(3, pb.ClientCommand_UPDATE_CONFIG, 0), 700, 0)) // 0 keeps the current value
	check(c.ok(3).EffectiveConfig, 700, 120000)
	c.send(withConfig(cmd(4, pb.ClientCommand_UPDATE_CONFIG, 0), 0, 5000))
	check(c.ok(4).EffectiveConfig, 700, 5000)
	c.send(cmd(5, pb.ClientCommand_UPDATE_CONFIG, 0)) // no config at all
	check(c.ok(5).EffectiveConfig, 700, 5000)
}

func TestPushStateEveryIntervalUpdateConfigAndDisable(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	c := dial(t, e)
	c.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 0))
	c.ok(1)
	t0 := time.Now()
	c.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE))
	c.ok(2)
	first := c.recv().GetState()
	if first == nil {
		t.Fatal("expected a State")
	}
	if since := time.Since(t0); since < 450*time.Millisecond {
		t.Fatalf("first State after %v; it comes one interval later", since)
	}
	second := c.recv().GetState()
	if second == nil || second.InstantTs <= first.InstantTs {
		t.Fatalf("second State %v after %v", second, first)
	}
	// UPDATE_CONFIG re-arms the timer with the new interval.
	c.send(withConfig(cmd(3, pb.ClientCommand_UPDATE_CONFIG, 0), 1500, 0))
	for {
		msg := c.recv()
		if msg.GetState() == nil {
			if msg.GetResponse().GetId() != 3 {
				t.Fatalf("unexpected %v", msg)
			}
			break
		}
	}
	t1 := nowMs()
	for { // a State taken before the OK may follow it; the next one comes an interval later
		st := c.recvWithin(5 * time.Second).GetState()
		if st == nil {
			t.Fatal("expected a State")
		}
		if st.InstantTs < t1 {
			continue
		}
		if st.InstantTs-t1 < 1400 {
			t.Fatalf("State %d ms after UPDATE_CONFIG to 1500 ms", st.InstantTs-t1)
		}
		break
	}
	c.send(cmd(4, pb.ClientCommand_PUSH_DISABLE, pb.ClientCommand_STATE))
	for { // a State already in flight may precede the OK; after it, none come
		msg := c.recv()
		if msg.GetState() == nil {
			if msg.GetResponse().GetId() != 4 {
				t.Fatalf("unexpected %v", msg)
			}
			break
		}
	}
	c.expectNothing(1700 * time.Millisecond)
}

func TestPushRuntimeAndUnknownSourcesAndCommandsAreErrors(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	c := dial(t, e)
	c.hello(1)
	c.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_RUNTIME))
	c.err(2)
	c.send(cmd(3, pb.ClientCommand_Command(6), pb.ClientCommand_STATE)) // 6 is unused
	if r := c.err(3); !strings.HasPrefix(r.Error, "unknown command") {
		t.Fatalf("error %q", r.Error)
	}
	c.send(cmd(4, pb.ClientCommand_REQUEST, pb.ClientCommand_Source(9)))
	if r := c.err(4); !strings.HasPrefix(r.Error, "unknown source") {
		t.Fatalf("error %q", r.Error)
	}
}

func TestEventsPauseResumeAndRetention(t *testing.T) {
	var clockMu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }

	src := newFakeSource()
	e := startEndpoint(t, src, withClock(clock))
	c := dial(t, e)
	c.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 0, 10000))
	c.ok(1)
	c.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS))
	c.ok(2)
	src.publish("live")
	live := c.recv()
	if eventPeer(t, live) != "live" || live.GetEvent().GetType().GetName() != "PeerConnecting" || live.GetEvent().Ts == 0 {
		t.Fatalf("event %v", live)
	}
	c.send(cmd(3, pb.ClientCommand_PUSH_PAUSE, pb.ClientCommand_EVENTS))
	c.ok(3)
	src.publish("old")
	advance(11 * time.Second) // "old" is past the 10 s retention by the time of resume
	src.publish("a")
	src.publish("b")
	c.expectNothing(300 * time.Millisecond) // paused: nothing is sent
	c.send(cmd(4, pb.ClientCommand_PUSH_RESUME, pb.ClientCommand_EVENTS))
	c.ok(4) // the OK comes first
	if a, b := eventPeer(t, c.recv()), eventPeer(t, c.recv()); a != "a" || b != "b" {
		t.Fatalf("after resume got %q %q", a, b)
	}
	src.publish("after")
	if p := eventPeer(t, c.recv()); p != "after" {
		t.Fatalf("got %q", p)
	}
	// PUSH_DISABLE of both sources while paused clears the queue
	c.send(cmd(5, pb.ClientCommand_PUSH_PAUSE, 0))
	c.ok(5)
	src.publish("dropped")
	c.send(cmd(6, pb.ClientCommand_PUSH_DISABLE, pb.ClientCommand_EVENTS))
	c.ok(6)
	c.send(cmd(7, pb.ClientCommand_PUSH_RESUME, 0))
	c.ok(7)
	c.expectNothing(300 * time.Millisecond)
	if e.Stats().PausedPruned < 1 {
		t.Fatalf("stats %+v", e.Stats())
	}
}

func TestPausedStatesAreQueuedPrunedToRetentionAndSentAfterTheOK(t *testing.T) {
	var clockMu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	e := startEndpoint(t, newFakeSource(), withClock(clock))
	c := dial(t, e)
	c.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 10000))
	c.ok(1)
	c.send(cmd(2, pb.ClientCommand_PUSH_PAUSE, 0))
	c.ok(2)
	c.send(cmd(3, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE))
	c.ok(3)
	s := onlySession(t, e)
	queuedLen := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.pauseQ) }
	waitFor(t, 10*time.Second, "a State queued while paused", func() bool { return queuedLen() >= 1 })
	if n := queuedLen(); n != 1 {
		t.Fatalf("%d queued, want the first State only", n)
	}
	clockMu.Lock()
	now = now.Add(11 * time.Second) // that State is now older than the 10 s retention
	clockMu.Unlock()
	waitFor(t, 10*time.Second, "three States queued while paused", func() bool { return queuedLen() >= 3 })
	// the old State was pruned as newer ones were queued; only those within retention remain
	if p := e.Stats().PausedPruned; p != 1 {
		t.Fatalf("pruned %d, want 1", p)
	}
	s.mu.Lock()
	for _, q := range s.pauseQ {
		if !q.at.Equal(time.Unix(1011, 0)) {
			t.Errorf("queued at %v", q.at)
		}
	}
	s.mu.Unlock()
	c.send(cmd(4, pb.ClientCommand_PUSH_RESUME, 0))
	c.ok(4) // the OK first, then the queue
	var last uint64
	for range 3 {
		st := c.recv().GetState()
		if st == nil || st.InstantTs < last {
			t.Fatalf("expected States in order, got %v", st)
		}
		last = st.InstantTs
	}
}

func TestOverflowSendsDiscardingEventsAndCounts(t *testing.T) {
	src := newFakeSource()
	e := startEndpoint(t, src, EventQueue(4))
	c := dial(t, e)
	c.hello(1)
	c.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS))
	c.ok(2)
	s := onlySession(t, e)
	s.wmu.Lock() // the pump cannot take an event from the queue, let alone write it
	for i := range 10 {
		src.publish(string(rune('0' + i)))
	}
	s.wmu.Unlock()
	if n := c.recv().GetNotice(); n == nil || n.Kind != pb.ServerNotice_DISCARDING_EVENTS {
		t.Fatalf("expected the DISCARDING_EVENTS notice first, got %v", n)
	}
	notices := 1
	var got []string
	for len(got) < 4 {
		got = append(got, eventPeer(t, c.recv()))
	}
	st := e.Stats()
	if notices != 1 || st.NoticesSent != 1 || st.EventsDropped != 6 || len(got) != 4 {
		t.Fatalf("got %v, %d notices, stats %+v", got, notices, st)
	}
	for i, p := range got { // the oldest events are kept, in order
		if p != string(rune('0'+i)) {
			t.Fatalf("events %v", got)
		}
	}
	c.expectNothing(200 * time.Millisecond)
}

func TestSnapshotDurationIsThePeriodSinceTheClientsPreviousState(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	c := dial(t, e)
	beforeHello := nowMs()
	c.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 0))
	c.ok(1)
	c.send(cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE))
	asked := c.recv().GetState()
	// a State asked for right after HELLO covers the time since HELLO
	if uint64(asked.SnapshotDurationMs) > asked.InstantTs-beforeHello {
		t.Fatalf("asked: %d ms covered, %d since before HELLO", asked.SnapshotDurationMs, asked.InstantTs-beforeHello)
	}
	enabledAt := nowMs()
	c.send(cmd(3, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE))
	c.ok(3)
	var pushed []*pb.State
	for range 4 {
		pushed = append(pushed, c.recv().GetState())
	}
	// the first push covers one interval from PUSH_ENABLE; each later one exactly the gap to the previous
	if d := uint64(pushed[0].SnapshotDurationMs); d < 499 || d > pushed[0].InstantTs-enabledAt+1 {
		t.Fatalf("first pushed State covers %d ms", d)
	}
	for i := 1; i < len(pushed); i++ {
		gap := pushed[i].InstantTs - pushed[i-1].InstantTs
		if uint64(pushed[i].SnapshotDurationMs) != gap || gap < 499 {
			t.Fatalf("State %d covers %d ms, gap %d", i, pushed[i].SnapshotDurationMs, gap)
		}
	}
}

func TestEveryConnectionCarriesStreamsEvenWhenTheSourceLeavesThemOut(t *testing.T) {
	e := startEndpoint(t, newFakeSource()) // its Connection has no StreamList
	c := dial(t, e)
	c.hello(1)
	c.send(cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE))
	st := c.recv().GetState()
	conns := st.GetSubsystems().GetConnections()
	if len(conns) != 1 || conns[0].Streams == nil || len(conns[0].Streams.Streams) != 0 {
		t.Fatalf("connections %v", conns)
	}
	wire, _ := proto.Marshal(conns[0])
	if !bytes.HasSuffix(wire, []byte{0x5a, 0x00}) { // field 11, empty: what the observer UI needs
		t.Fatalf("connection on the wire %x lacks 5a 00", wire)
	}

	// and a nil Connection in the Source's list is dropped rather than failing the State
	st2 := &pb.State{Subsystems: &pb.Subsystems{Connections: []*pb.Connection{nil, {Id: []byte{2}}, nil}}}
	ensureStreams(st2)
	if n := len(st2.Subsystems.Connections); n != 1 || st2.Subsystems.Connections[0].Streams == nil {
		t.Fatalf("after ensureStreams: %v", st2)
	}
}

func TestASourceThatPanicsCostsOnlyThatState(t *testing.T) {
	src := newFakeSource()
	src.panics = true
	e := startEndpoint(t, src)
	c := dial(t, e)
	c.hello(1)
	c.send(cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE))
	c.err(2)
	src.mu.Lock()
	src.panics = false
	src.mu.Unlock()
	c.send(cmd(3, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE))
	if c.recv().GetState() == nil {
		t.Fatal("expected a State")
	}
	if e.Stats().SnapshotFailures != 1 {
		t.Fatalf("stats %+v", e.Stats())
	}
}

// Nothing pushed follows the OK of PUSH_DISABLE or PUSH_PAUSE: an event offered just before the
// command, while the pump is held, must not go out after the OK. (The pump decides under the write
// lock; this holds the guarantee, it did not catch the narrow race the lock closed.)
func TestNothingPushedFollowsTheOKOfADisableOrPause(t *testing.T) {
	src := newFakeSource()
	e := startEndpoint(t, src)
	c := dial(t, e)
	c.hello(1)
	s := onlySession(t, e)
	id := uint64(1)
	next := func() uint64 { id++; return id }
	for round := range 20 {
		off := pb.ClientCommand_PUSH_DISABLE
		if round%2 == 1 {
			off = pb.ClientCommand_PUSH_PAUSE
		}
		on := next()
		c.send(cmd(on, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS))
		c.ok(on)
		if off == pb.ClientCommand_PUSH_PAUSE {
			resume := next()
			c.send(cmd(resume, pb.ClientCommand_PUSH_RESUME, 0))
			c.ok(resume)
		}
		s.wmu.Lock() // hold the pump
		src.publish("raced")
		offID := next()
		c.send(cmd(offID, off, pb.ClientCommand_EVENTS))
		waitFor(t, 5*time.Second, "the command applied", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return !s.pushEvents || s.paused
		})
		s.wmu.Unlock()
		marker := next()
		c.send(cmd(marker, pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME))
		for { // an event taken before the command may precede the OK
			msg := c.recv()
			if msg.GetEvent() == nil {
				if r := msg.GetResponse(); r.GetId() != offID || r.GetResult() != pb.CommandResponse_OK {
					t.Fatalf("round %d: expected the OK of %v, got %v", round, off, msg)
				}
				break
			}
		}
		if msg := c.recv(); msg.GetRuntime() == nil {
			t.Fatalf("round %d: after the OK of %v came %v", round, off, msg)
		}
		if off == pb.ClientCommand_PUSH_PAUSE { // the held event waits in the pause queue
			disable := next()
			c.send(cmd(disable, pb.ClientCommand_PUSH_DISABLE, pb.ClientCommand_EVENTS))
			c.ok(disable)
		}
	}
}
