// Command tracestat-oracle is OURS, not go-libp2p-pubsub-tracer's: a stand-in for its `tracestat`,
// which cannot be built here (the Go module proxy answers 403 for go-libp2p-pubsub-tracer, see
// docs/pubsub.md). It applies tracestat's definitions, written from reading tracestat's source, to
// trace files decoded with go-libp2p-pubsub's own pb package:
//
//   - per peer (the event's peerID): every PUBLISH_MESSAGE, DELIVER_MESSAGE, DUPLICATE_MESSAGE,
//     REJECT_MESSAGE, SEND_RPC and DROP_RPC counts once;
//   - per message id: the PUBLISH and DELIVER timestamps, sorted; each one after the earliest minus
//     the earliest is a propagation delay; milliseconds are rounded as tracestat rounds them
//     ((ns + 499999) / 1e6: to the nearest, a half down); the CDF is cumulative over those milliseconds;
//   - with -topic, only events of messages published in that topic count (two passes).
//
// Its JSON has tracestat's -json layout (Events.PerPeer keyed by base58 peer id, Events.Totals,
// Delays.PerMessage keyed by hex message id, Delays.CDF) plus an "Ours" object that tracestat does
// not write: every delay in nanoseconds with its peer and event kind, so a test can compare
// exactly. Unlike tracestat, which reads only traced's gzip files, it also reads go's PBTracer
// (varint-delimited TraceEvents) and JSONTracer (encoding/json lines) files; the form is told by
// the first bytes.
//
// With -open-gzip, a gzip file that is still being written (whole batches flushed, no trailer yet,
// like the exporter's collector recording while it runs) ends at its last whole event; tracestat
// would stop with "unexpected EOF".
//
//	tracestat-oracle [-topic T] [-json out.json] [-open-gzip] FILE...
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
)

const maxEvent = 1 << 20 // tracestat's delimited reader limit

var openGzip bool

func main() {
	topic := flag.String("topic", "", "count only messages published in this topic")
	out := flag.String("json", "", "write the JSON here instead of stdout")
	flag.BoolVar(&openGzip, "open-gzip", false, "a gzip file without its trailer ends at its last whole event")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: tracestat-oracle [-topic T] [-json out.json] [-open-gzip] FILE...")
		os.Exit(2)
	}
	st := newStat()
	var err error
	if *topic != "" {
		inTopic := map[string]bool{}
		for _, f := range flag.Args() {
			if err = load(f, func(e *pb.TraceEvent) {
				if e.GetType() == pb.TraceEvent_PUBLISH_MESSAGE && e.GetPublishMessage().GetTopic() == *topic {
					inTopic[string(e.GetPublishMessage().GetMessageID())] = true
				}
			}); err != nil {
				fail(err)
			}
		}
		for _, f := range flag.Args() {
			if err = load(f, func(e *pb.TraceEvent) {
				if mid, ok := messageID(e); ok && inTopic[mid] {
					st.add(e)
				}
			}); err != nil {
				fail(err)
			}
		}
	} else {
		for _, f := range flag.Args() {
			if err = load(f, st.add); err != nil {
				fail(err)
			}
		}
	}
	w := os.Stdout
	if *out != "" {
		if w, err = os.Create(*out); err != nil {
			fail(err)
		}
		defer w.Close()
	}
	if err := json.NewEncoder(w).Encode(st.dump()); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tracestat-oracle:", err)
	os.Exit(1)
}

// messageID is the id of a message event, as tracestat's topic filter reads it.
func messageID(e *pb.TraceEvent) (string, bool) {
	switch e.GetType() {
	case pb.TraceEvent_PUBLISH_MESSAGE:
		return string(e.GetPublishMessage().GetMessageID()), true
	case pb.TraceEvent_REJECT_MESSAGE:
		return string(e.GetRejectMessage().GetMessageID()), true
	case pb.TraceEvent_DUPLICATE_MESSAGE:
		return string(e.GetDuplicateMessage().GetMessageID()), true
	case pb.TraceEvent_DELIVER_MESSAGE:
		return string(e.GetDeliverMessage().GetMessageID()), true
	}
	return "", false
}

// load reads one file of any of go's three trace forms; any damage is an error, as in tracestat.
func load(name string, add func(*pb.TraceEvent)) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	head, _ := r.Peek(2)
	switch {
	case bytes.Equal(head, []byte{0x1f, 0x8b}): // traced: gzip of delimited TraceEvents
		gz, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer gz.Close()
		err = readDelimited(name, gz, add)
		if openGzip && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return err
	case len(head) > 0 && head[0] == '{': // JSONTracer: one encoding/json object per line
		dec := json.NewDecoder(r)
		for {
			var e pb.TraceEvent
			if err := dec.Decode(&e); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			add(&e)
		}
	default: // PBTracer: delimited TraceEvents
		return readDelimited(name, r, add)
	}
}

func readDelimited(name string, r io.Reader, add func(*pb.TraceEvent)) error {
	dr := pbio.NewDelimitedReader(r, maxEvent)
	for {
		var e pb.TraceEvent
		if err := dr.ReadMsg(&e); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		add(&e)
	}
}

type counts struct {
	Publish, Deliver, Duplicate, Reject, SendRPC, DropRPC int
}

type stamp struct {
	ns   int64
	peer peer.ID
	kind string
}

type stat struct {
	peers  map[peer.ID]*counts
	totals counts
	msgs   map[string][]stamp
}

func newStat() *stat {
	return &stat{peers: map[peer.ID]*counts{}, msgs: map[string][]stamp{}}
}

func (s *stat) add(e *pb.TraceEvent) {
	p := peer.ID(e.GetPeerID())
	c := s.peers[p]
	if c == nil {
		c = &counts{}
		s.peers[p] = c
	}
	switch e.GetType() {
	case pb.TraceEvent_PUBLISH_MESSAGE:
		c.Publish++
		s.totals.Publish++
		mid := string(e.GetPublishMessage().GetMessageID())
		s.msgs[mid] = append(s.msgs[mid], stamp{e.GetTimestamp(), p, "publish"})
	case pb.TraceEvent_REJECT_MESSAGE:
		c.Reject++
		s.totals.Reject++
	case pb.TraceEvent_DUPLICATE_MESSAGE:
		c.Duplicate++
		s.totals.Duplicate++
	case pb.TraceEvent_DELIVER_MESSAGE:
		c.Deliver++
		s.totals.Deliver++
		mid := string(e.GetDeliverMessage().GetMessageID())
		s.msgs[mid] = append(s.msgs[mid], stamp{e.GetTimestamp(), p, "deliver"})
	case pb.TraceEvent_SEND_RPC:
		c.SendRPC++
		s.totals.SendRPC++
	case pb.TraceEvent_DROP_RPC:
		c.DropRPC++
		s.totals.DropRPC++
	}
}

type bucket struct {
	Millis int
	Count  int
}

// delay is one of tracestat's delays with what tracestat drops: whose event it was, and the ns.
type delay struct {
	Peer    string
	Kind    string
	DelayNs int64
}

type dump struct {
	Events struct {
		PerPeer map[string]counts
		Totals  counts
	}
	Delays struct {
		PerMessage map[string][]int
		CDF        []bucket
	}
	Ours struct {
		PerMessageNs map[string][]delay
		Origin       map[string]string
	}
}

func (s *stat) dump() *dump {
	var d dump
	d.Events.PerPeer = map[string]counts{}
	for p, c := range s.peers {
		d.Events.PerPeer[p.String()] = *c
	}
	d.Events.Totals = s.totals
	d.Delays.PerMessage = map[string][]int{}
	d.Ours.PerMessageNs = map[string][]delay{}
	d.Ours.Origin = map[string]string{}
	samples := map[int]int{}
	for mid, stamps := range s.msgs {
		sort.SliceStable(stamps, func(i, j int) bool { return stamps[i].ns < stamps[j].ns })
		key := hex.EncodeToString([]byte(mid))
		ms := make([]int, 0, len(stamps)-1)
		ns := make([]delay, 0, len(stamps)-1)
		for _, st := range stamps[1:] {
			dt := st.ns - stamps[0].ns
			m := int((dt + 499999) / 1000000)
			ms = append(ms, m)
			samples[m]++
			ns = append(ns, delay{Peer: st.peer.String(), Kind: st.kind, DelayNs: dt})
		}
		d.Delays.PerMessage[key] = ms
		d.Ours.PerMessageNs[key] = ns
		for _, st := range stamps {
			if st.kind == "publish" {
				d.Ours.Origin[key] = st.peer.String()
			}
		}
	}
	d.Delays.CDF = make([]bucket, 0, len(samples))
	for m, n := range samples {
		d.Delays.CDF = append(d.Delays.CDF, bucket{Millis: m, Count: n})
	}
	sort.Slice(d.Delays.CDF, func(i, j int) bool { return d.Delays.CDF[i].Millis < d.Delays.CDF[j].Millis })
	for i := 1; i < len(d.Delays.CDF); i++ {
		d.Delays.CDF[i].Count += d.Delays.CDF[i-1].Count
	}
	return &d
}
