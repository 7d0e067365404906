package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
)

func ev(typ pb.TraceEvent_Type, p peer.ID, ns int64, mid string) *pb.TraceEvent {
	e := &pb.TraceEvent{Type: typ.Enum(), PeerID: []byte(p), Timestamp: &ns}
	topic := "t"
	switch typ {
	case pb.TraceEvent_PUBLISH_MESSAGE:
		e.PublishMessage = &pb.TraceEvent_PublishMessage{MessageID: []byte(mid), Topic: &topic}
	case pb.TraceEvent_DELIVER_MESSAGE:
		e.DeliverMessage = &pb.TraceEvent_DeliverMessage{MessageID: []byte(mid), Topic: &topic}
	case pb.TraceEvent_DUPLICATE_MESSAGE:
		e.DuplicateMessage = &pb.TraceEvent_DuplicateMessage{MessageID: []byte(mid), Topic: &topic}
	case pb.TraceEvent_REJECT_MESSAGE:
		e.RejectMessage = &pb.TraceEvent_RejectMessage{MessageID: []byte(mid), Topic: &topic}
	}
	return e
}

// tracestat's rules on a message published by a and delivered by a, b (1.5 ms) and c (1.500001 ms).
func TestTracestatDefinitions(t *testing.T) {
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	st := newStat()
	for _, e := range []*pb.TraceEvent{
		ev(pb.TraceEvent_DELIVER_MESSAGE, c, 1_000_000+1_500_001, "m"),
		ev(pb.TraceEvent_PUBLISH_MESSAGE, a, 1_000_000, "m"),
		ev(pb.TraceEvent_DELIVER_MESSAGE, a, 1_000_100, "m"),
		ev(pb.TraceEvent_DELIVER_MESSAGE, b, 1_000_000+1_500_000, "m"),
		ev(pb.TraceEvent_DUPLICATE_MESSAGE, b, 3_000_000, "m"),
		ev(pb.TraceEvent_REJECT_MESSAGE, c, 3_000_000, "x"),
		ev(pb.TraceEvent_SEND_RPC_COMPLETED, a, 3_000_000, ""),
	} {
		st.add(e)
	}
	d := st.dump()
	if got := d.Events.PerPeer[a.String()]; got != (counts{Publish: 1, Deliver: 1}) {
		t.Fatalf("a: %+v", got)
	}
	if got := d.Events.PerPeer[b.String()]; got != (counts{Deliver: 1, Duplicate: 1}) {
		t.Fatalf("b: %+v", got)
	}
	if got := d.Events.PerPeer[c.String()]; got != (counts{Deliver: 1, Reject: 1}) {
		t.Fatalf("c: %+v", got)
	}
	// sorted, minus the earliest (the publish), to the nearest ms, a half down: 0.1 µs -> 0, 1.5 -> 1, 1.500001 -> 2
	if got := d.Delays.PerMessage["6d"]; len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Fatalf("delays: %v", got)
	}
	if want := []bucket{{0, 1}, {1, 2}, {2, 3}}; len(d.Delays.CDF) != 3 || d.Delays.CDF[2] != want[2] || d.Delays.CDF[0] != want[0] {
		t.Fatalf("cdf: %v", d.Delays.CDF)
	}
	if got := d.Ours.PerMessageNs["6d"][2]; got.Peer != c.String() || got.DelayNs != 1_500_001 {
		t.Fatalf("ns: %+v", got)
	}
	if d.Ours.Origin["6d"] != a.String() {
		t.Fatalf("origin: %v", d.Ours.Origin)
	}
}

// The three forms go writes give the same figures; a gzip without its trailer needs -open-gzip.
func TestEveryFormReadsTheSame(t *testing.T) {
	dir := t.TempDir()
	events := []*pb.TraceEvent{
		ev(pb.TraceEvent_PUBLISH_MESSAGE, "a", 10, "m"),
		ev(pb.TraceEvent_DELIVER_MESSAGE, "b", 2_000_010, "m"),
	}
	var delimited, lines bytes.Buffer
	w := pbio.NewDelimitedWriter(&delimited)
	enc := json.NewEncoder(&lines)
	for _, e := range events {
		if err := w.WriteMsg(e); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
	}
	var whole, open bytes.Buffer
	gz := gzip.NewWriter(&whole)
	gz.Write(delimited.Bytes())
	gz.Close()
	gz = gzip.NewWriter(&open)
	gz.Write(delimited.Bytes())
	gz.Flush()
	files := map[string][]byte{"x.pb": delimited.Bytes(), "x.json": lines.Bytes(), "x.pb.gz": whole.Bytes(), "open.pb.gz": open.Bytes()}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want []byte
	for _, name := range []string{"x.pb", "x.json", "x.pb.gz", "open.pb.gz"} {
		openGzip = name == "open.pb.gz"
		st := newStat()
		if err := load(filepath.Join(dir, name), st.add); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := json.Marshal(st.dump())
		if want == nil {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatalf("%s: %s, want %s", name, got, want)
		}
	}
	openGzip = false
	if err := load(filepath.Join(dir, "open.pb.gz"), newStat().add); err == nil {
		t.Fatal("a gzip without its trailer read as whole, as tracestat would not")
	}
}
