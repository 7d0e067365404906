package dht

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"math/bits"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

type node struct {
	h host.Host
	t *Tracker
	d *DHT
}

func newNode(t *testing.T) *node {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker()
	d, err := kaddht.New(h, kaddht.Mode(kaddht.ModeServer), tr.Option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(); _ = h.Close() })
	return &node{h: h, t: tr, d: tr.Wrap(d)}
}

// cpl computed here from the definition: leading zero bits of sha256(a) xor sha256(b).
func cpl(a, b peer.ID) uint32 {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	n := 0
	for i := range x {
		if v := x[i] ^ y[i]; v != 0 {
			return uint32(n + bits.LeadingZeros8(v))
		}
		n += 8
	}
	return uint32(n)
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRoutingTableAndQueries(t *testing.T) {
	nodes := []*node{newNode(t), newNode(t), newNode(t)}
	a := nodes[0]
	in, err := introspect.New(a.h, introspect.NoEndpoint(), introspect.WithProvider(a.t))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var mu sync.Mutex
	events := map[string][]map[string]any{}
	defer in.Subscribe(func(e *pb.Event) {
		var c map[string]any
		_ = json.Unmarshal([]byte(e.Content), &c)
		mu.Lock()
		events[e.Type.GetName()] = append(events[e.Type.GetName()], c)
		mu.Unlock()
	})()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := a.h.Connect(ctx, peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	until(t, "both peers in a's routing table", func() bool { return a.d.RoutingTable().Size() == 2 })

	st := in.State(time.Minute)
	part := st.Subsystems.GetDht()
	if part == nil || part.Protocol != "/ipfs/kad/1.0.0" || !part.Enabled || part.Params.GetK() != 20 {
		t.Fatalf("dht part %v", part)
	}
	seen := 0
	for _, b := range part.Buckets {
		for _, p := range b.Peers {
			id, err := peer.Decode(p.PeerId)
			if err != nil {
				t.Fatal(err)
			}
			if want := cpl(a.h.ID(), id); b.Cpl != want {
				t.Fatalf("peer %s in bucket cpl %d, want %d", id, b.Cpl, want)
			}
			if p.Status != pb.DHT_PeerInDHT_ACTIVE {
				t.Fatalf("connected peer %s is %v", id, p.Status)
			}
			seen++
		}
	}
	if seen != a.d.RoutingTable().Size() {
		t.Fatalf("%d peers in buckets, routing table holds %d", seen, a.d.RoutingTable().Size())
	}
	if part.IncomingQueries != nil {
		t.Fatalf("incoming query results filled without an outcome to measure: %v", part.IncomingQueries)
	}

	// One of a's own queries: counted by result, with its event.
	target := nodes[2].h.ID()
	if _, err := a.d.FindPeer(ctx, target); err != nil {
		t.Fatal(err)
	}
	if got := in.State(time.Minute).Subsystems.Dht.OutgoingQueries; got.GetSuccess() != 1 || got.GetError() != 0 {
		t.Fatalf("outgoing %v", got)
	}
	// A query another host sends a: served, seen by the request hook.
	served := a.t.Served()
	if _, err := nodes[1].d.GetClosestPeers(ctx, string(target)); err != nil {
		t.Fatal(err)
	}
	var inb map[string]any
	until(t, "the served request and its event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events["InboundDHTQuery"] {
			if ids, _ := e["peerIds"].([]any); len(ids) == 1 && ids[0] == nodes[1].h.ID().String() && e["targetPeerId"] == target.String() {
				inb = e
			}
		}
		return a.t.Served() > served && inb != nil
	})
	mu.Lock()
	out := events["OutboundDHTQuery"][0]
	mu.Unlock()
	if out["targetPeerId"] != target.String() || out["result"] != "SUCCESS" || out["type"] != "PEER" || out["direction"] != "OUTBOUND" {
		t.Fatalf("outbound event %v", out)
	}
	if inb["direction"] != "INBOUND" || inb["type"] != "PEER" || inb["targetPeerId"] != target.String() {
		t.Fatalf("inbound event %v", inb)
	}
	if _, ok := inb["result"]; ok {
		t.Fatalf("inbound event with a result the hook cannot see: %v", inb)
	}
}
