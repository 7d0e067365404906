package fakesource

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// What the observer UI needs of every message (tests/observer/read_with_observer.js checks the
// same over the wire): declared event properties, DHT params, traffic and timelines everywhere.
func TestTheScriptGivesWhatTheObserverNeeds(t *testing.T) {
	s := New()
	declared := map[string]map[string]bool{}
	for _, et := range s.Runtime().EventTypes {
		declared[et.Name] = map[string]bool{}
		for _, p := range et.PropertyTypes {
			declared[et.Name][p.Name] = true
		}
	}
	var events []*pb.Event
	cancel := s.Subscribe(func(ev *pb.Event) { events = append(events, ev) })
	for range 12 {
		s.Step()
	}
	cancel()
	s.Step()                    // not seen: unsubscribed
	if len(events) != 12+12+4 { // a connection and a query per step, a close every third
		t.Fatalf("%d events", len(events))
	}
	for _, ev := range events {
		var content map[string]any
		if err := json.Unmarshal([]byte(ev.Content), &content); err != nil {
			t.Fatal(err)
		}
		for key := range content {
			if !declared[ev.Type.Name][key] {
				t.Errorf("%s.%s is not declared in the Runtime", ev.Type.Name, key)
			}
		}
	}
	st := s.State(2 * time.Minute)
	conns := st.GetSubsystems().GetConnections()
	closed, streams := 0, 0
	for _, c := range conns {
		if c.Streams == nil || c.Traffic == nil || c.Timeline == nil || c.Timeline.OpenTs == 0 {
			t.Fatalf("connection %v", c)
		}
		if c.Status == pb.Status_CLOSED {
			closed++
		}
		for _, st := range c.Streams.Streams {
			streams++
			if st.Traffic == nil || st.Timeline == nil {
				t.Fatalf("stream %v", st)
			}
		}
	}
	if len(conns) != 3+13 || closed != 4 || streams == 0 {
		t.Fatalf("%d connections, %d closed, %d streams", len(conns), closed, streams)
	}
	if d := st.GetSubsystems().GetDht(); d.GetParams() == nil || len(d.GetBuckets()) == 0 {
		t.Fatalf("dht %v", d)
	}
	time.Sleep(2 * time.Millisecond) // past the last close time
	if got := len(s.State(time.Nanosecond).GetSubsystems().GetConnections()); got != len(conns)-closed {
		t.Fatalf("with no retention %d connections, want the %d open ones", got, len(conns)-closed)
	}
}
