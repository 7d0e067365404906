package ws

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

func TestClientLimitAtHello(t *testing.T) {
	e := startEndpoint(t, newFakeSource(), MaxClients(2))
	a, b := dial(t, e), dial(t, e)
	a.hello(1)
	b.hello(1)
	c := dial(t, e) // connecting is allowed: it waits in the pending pool
	c.send(cmd(1, pb.ClientCommand_HELLO, 0))
	if r := c.err(1); r.Error != "client limit reached" {
		t.Fatalf("error %q", r.Error)
	}
	if code := c.expectClose(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", code)
	}
	if n := e.Stats().ClientsRejected; n != 1 {
		t.Fatalf("rejected %d", n)
	}
	if _, p := e.Clients(); p != 0 { // a refused client does not hold a pending slot while it closes
		t.Fatalf("%d pending", p)
	}
	a.close()
	waitFor(t, 5*time.Second, "the closed session to leave", func() bool { n, _ := e.Clients(); return n < 2 })
	d := dial(t, e)
	d.hello(1)
	b.send(cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME)) // the others are unaffected
	if b.recv().GetRuntime() == nil {
		t.Fatal("expected the Runtime")
	}
}

func TestMalformedInputNeverHurtsTheServer(t *testing.T) {
	e := startEndpoint(t, newFakeSource(), MaxCommandBytes(1024), MaxBadCommands(5))
	c := dial(t, e)
	c.sendRaw(websocket.BinaryMessage, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}) // not a ClientCommand
	if r := c.err(0); !strings.HasPrefix(r.Error, "malformed command") {
		t.Fatalf("error %q", r.Error)
	}
	c.sendRaw(websocket.TextMessage, []byte("hello")) // commands are binary, as in the Python Endpoint
	if r := c.err(0); !strings.Contains(r.Error, "binary") {
		t.Fatalf("error %q", r.Error)
	}
	c.hello(1) // a good command resets the count of bad ones

	big := dial(t, e)
	big.sendRaw(websocket.BinaryMessage, make([]byte, 4096)) // above the command size cap
	if code := big.expectClose(5 * time.Second); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d", code)
	}

	bad := dial(t, e)
	for range 5 {
		bad.sendRaw(websocket.BinaryMessage, []byte{0xff})
	}
	for range 5 {
		bad.err(0)
	}
	if code := bad.expectClose(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", code)
	}
	dial(t, e).hello(1) // still serving
	c.send(cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME))
	if c.recv().GetRuntime() == nil {
		t.Fatal("the first client lost its session")
	}
	waitFor(t, 5*time.Second, "the oversized message counted", func() bool { return e.Stats().CommandsTooLarge == 1 })
	st := e.Stats()
	if st.BadCommands != 7 || st.ClosedForErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// paddedHello is a HELLO of exactly n bytes: an unknown length-delimited field (15) fills it.
func paddedHello(t *testing.T, n int) []byte {
	base, _ := proto.Marshal(&pb.ClientCommand{Id: 1, Command: pb.ClientCommand_HELLO})
	tag := protowire.AppendTag(nil, 15, protowire.BytesType)
	for fill := n - len(base) - len(tag) - 1; fill > 0; fill-- {
		data := protowire.AppendBytes(append(append([]byte{}, base...), tag...), make([]byte, fill))
		if len(data) == n {
			return data
		}
	}
	t.Fatalf("cannot pad a HELLO to %d bytes", n)
	return nil
}

func TestACommandOfExactlyTheLimitIsAcceptedAndOneByteMoreIsNot(t *testing.T) {
	e := startEndpoint(t, newFakeSource())
	data := paddedHello(t, DefaultMaxCommandBytes)
	if len(data) != 65536 {
		t.Fatalf("%d bytes", len(data))
	}
	c := dial(t, e)
	c.sendRaw(websocket.BinaryMessage, data)
	c.ok(1)
	c.sendRaw(websocket.BinaryMessage, append(data, 'x')) // one byte more: over the cap
	if code := c.expectClose(5 * time.Second); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d", code)
	}
}

func TestAClientThatNeverSaysHelloGivesItsSlotBack(t *testing.T) {
	e := startEndpoint(t, newFakeSource(), HelloTimeout(300*time.Millisecond))
	silent := dial(t, e)
	if code := silent.expectClose(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", code)
	}
	waitFor(t, 5*time.Second, "the slot given back", func() bool { _, p := e.Clients(); return p == 0 })
	if n := e.Stats().HelloTimeouts; n != 1 {
		t.Fatalf("hello timeouts %d", n)
	}
}

func TestAnIdleClientGivesItsSlotBack(t *testing.T) {
	e := startEndpoint(t, newFakeSource(), IdleTimeout(400*time.Millisecond))
	idle := dial(t, e)
	idle.hello(1) // then nothing pushed and nothing asked
	if code := idle.expectClose(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", code)
	}
	waitFor(t, 5*time.Second, "the slot given back", func() bool { a, _ := e.Clients(); return a == 0 })
	if n := e.Stats().IdleTimeouts; n != 1 {
		t.Fatalf("idle timeouts %d", n)
	}
}

func TestAStreamingClientThatAnswersPingsIsNotIdle(t *testing.T) {
	src := newFakeSource()
	e := startEndpoint(t, src, IdleTimeout(600*time.Millisecond))
	c := dial(t, e) // its reader answers pings
	c.hello(1)
	c.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS))
	c.ok(2)
	c.expectNothing(2 * time.Second) // three idle periods without a command or an event
	src.publish("still here")
	if p := eventPeer(t, c.recv()); p != "still here" {
		t.Fatalf("got %q", p)
	}
	if n := e.Stats().IdleTimeouts; n != 0 {
		t.Fatalf("idle timeouts %d", n)
	}
}

func TestAFullPendingPoolClosesTheOldestPendingConnection(t *testing.T) {
	e := startEndpoint(t, newFakeSource(), MaxPendingClients(2))
	pending := func(n int) func() bool { return func() bool { _, p := e.Clients(); return p == n } }
	a := dial(t, e)
	waitFor(t, 5*time.Second, "a pending", pending(1))
	b := dial(t, e)
	waitFor(t, 5*time.Second, "b pending", pending(2))
	c := dial(t, e)
	if code := a.expectClose(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", code)
	}
	b.hello(1) // b moves to the main pool, c stays pending
	c.hello(1)
	if act, p := e.Clients(); act != 2 || p != 0 {
		t.Fatalf("clients %d active, %d pending", act, p)
	}
	if n := e.Stats().Evicted; n != 1 {
		t.Fatalf("evicted %d", n)
	}
}

// Issue 25 item 2: an attacker reopening silent connections must not lock real clients out.
func TestSilentConnectionsCannotLockOutARealClient(t *testing.T) {
	e := startEndpoint(t, newFakeSource()) // the defaults: 4 pending slots, HELLO deadline 10 s
	stop := make(chan struct{})
	var opened atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the attacker: a burst that fills the pending pool, then 10 silent connections a second
		defer wg.Done()
		var conns []*websocket.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		open := func() {
			if c, err := dialConn(e.URL(), 0); err == nil {
				conns = append(conns, c)
				opened.Add(1)
			}
		}
		for range 2 * DefaultMaxPendingClients {
			open()
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				open()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 10*time.Second, "the pending pool full and turning over", func() bool {
		return e.Stats().Evicted >= DefaultMaxPendingClients
	})

	start, evictedBefore := time.Now(), e.Stats().Evicted
	for i := range 10 {
		t0 := time.Now()
		c := dial(t, e)
		c.send(cmd(1, pb.ClientCommand_HELLO, 0))
		if r := c.recvWithin(2 * time.Second).GetResponse(); r.GetResult() != pb.CommandResponse_OK {
			t.Fatalf("real client %d: %v", i, r)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("real client %d served after %v", i, d)
		}
		c.close()
		time.Sleep(150 * time.Millisecond) // let the attacker open more in between
	}
	// the attack really ran during the clients' attempts, at more than 2 connections a second
	elapsed := time.Since(start).Seconds()
	if rate := float64(e.Stats().Evicted-evictedBefore) / elapsed; rate < 2 {
		t.Fatalf("attack rate %.1f evictions/s over %.1fs", rate, elapsed)
	}
	if _, p := e.Clients(); p > DefaultMaxPendingClients {
		t.Fatalf("%d pending", p)
	}
}

// A client that asks for everything and never reads: its queue overflows and its writes stall,
// and neither the Source nor another client notices.
func TestASlowClientBlocksNeitherTheSourceNorAnotherClient(t *testing.T) {
	src := newFakeSource()
	src.pad = 256 << 10 // 256 KiB States fill the slow client's socket in seconds
	e := startEndpoint(t, src)

	slow, err := dialConn(e.URL(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	for i, c := range []*pb.ClientCommand{
		withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 0),
		cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE),
		cmd(3, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS),
	} {
		data, _ := proto.Marshal(c)
		if err := slow.WriteMessage(websocket.BinaryMessage, data); err != nil {
			t.Fatal(i, err)
		}
	} // and never reads

	fast := dial(t, e)
	fast.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 0))
	fast.ok(1)
	fast.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE))
	fast.ok(2)

	stop := make(chan struct{})
	var slowest atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the host publishing events as fast as it can
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			src.publish("p")
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
			}
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// The slow client's queue overflows: its pump is stuck on a write it does not read.
	waitFor(t, 30*time.Second, "the slow client's event queue to overflow", func() bool {
		return e.Stats().EventsDropped > 0
	})
	last := time.Now()
	for range 6 { // meanwhile the other client gets its States on time
		if fast.recvWithin(3*time.Second).GetState() == nil {
			t.Fatal("expected a State")
		}
		if gap := time.Since(last); gap > 2*time.Second {
			t.Fatalf("a State %v after the previous one", gap)
		}
		last = time.Now()
	}
	if d := time.Duration(slowest.Load()); d > 500*time.Millisecond {
		t.Fatalf("publishing an event took up to %v", d)
	}
	t0 := time.Now()
	_ = e.Close() // a stuck write does not hold Close up either
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestANonReadingClientIsClosedAfterTheIdleLimit(t *testing.T) {
	src := newFakeSource()
	e := startEndpoint(t, src, IdleTimeout(time.Second))
	slow, err := dialConn(e.URL(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	for _, c := range []*pb.ClientCommand{cmd(1, pb.ClientCommand_HELLO, 0), cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS)} {
		data, _ := proto.Marshal(c)
		_ = slow.WriteMessage(websocket.BinaryMessage, data)
	}
	waitFor(t, 10*time.Second, "the non-reading client to be closed", func() bool {
		a, _ := e.Clients()
		return e.Stats().IdleTimeouts == 1 && a == 0
	})
}

func TestCloseEndsEverySessionAndLeaksNoGoroutine(t *testing.T) {
	base := runtime.NumGoroutine()
	src := newFakeSource()
	src.pad = 64 << 10
	e, err := New(src, MaxPendingClients(2))
	if err != nil {
		t.Fatal(err)
	}
	pendingC := dial(t, e)
	streaming := dial(t, e)
	streaming.send(withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 0))
	streaming.ok(1)
	streaming.send(cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE))
	streaming.ok(2)
	paused := dial(t, e)
	paused.hello(1)
	paused.send(cmd(2, pb.ClientCommand_PUSH_PAUSE, 0))
	paused.ok(2)
	paused.send(cmd(3, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS))
	paused.ok(3)
	slow, err := dialConn(e.URL(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*pb.ClientCommand{withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 500, 0), cmd(2, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_STATE)} {
		data, _ := proto.Marshal(c)
		_ = slow.WriteMessage(websocket.BinaryMessage, data)
	}
	src.publish("x")
	waitFor(t, 5*time.Second, "three active sessions and one pending", func() bool {
		a, p := e.Clients()
		return a == 3 && p == 1
	})
	if streaming.recv().GetState() == nil {
		t.Fatal("expected a State")
	}

	t0 := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for _, c := range []*client{pendingC, streaming, paused} {
		if code := c.expectClose(5 * time.Second); code != websocket.CloseGoingAway {
			t.Fatalf("close code %d", code)
		}
	}
	if _, err := dialConn(e.URL(), 0); err == nil {
		t.Fatal("still accepting connections after Close")
	}
	if n := src.subscribers(); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
	_ = e.Close() // a second Close is harmless
	for _, c := range []*client{pendingC, streaming, paused} {
		c.close()
	}
	_ = slow.Close()
	waitFor(t, 5*time.Second, "the goroutine count back to where it was", func() bool {
		return runtime.NumGoroutine() <= base
	})
}
