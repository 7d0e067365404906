package pubsub

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	ps "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// Two gossipsub hosts on one topic: the introspected one reports its join and the graft of the other.
func TestJoinAndGraftEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := newHost(t), newHost(t)
	tr := NewTracer()
	in, err := introspect.New(a, introspect.NoEndpoint(), introspect.WithProvider(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var mu sync.Mutex
	got := map[string][]map[string]any{}
	defer in.Subscribe(func(e *pb.Event) {
		var c map[string]any
		_ = json.Unmarshal([]byte(e.Content), &c)
		mu.Lock()
		got[e.Type.GetName()] = append(got[e.Type.GetName()], c)
		mu.Unlock()
	})()
	names := map[string]bool{}
	for _, et := range in.Runtime().EventTypes {
		names[et.Name] = true
	}
	if !names["PubsubGraft"] || !names["PubsubJoin"] {
		t.Fatalf("pubsub event types not declared: %v", names)
	}
	psa, err := ps.NewGossipSub(ctx, a, tr.Option())
	if err != nil {
		t.Fatal(err)
	}
	psb, err := ps.NewGossipSub(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*ps.PubSub{psa, psb} {
		topic, err := p.Join("t")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := topic.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		joins, grafts := got["PubsubJoin"], got["PubsubGraft"]
		mu.Unlock()
		if len(joins) > 0 && len(grafts) > 0 {
			if joins[0]["topic"] != "t" || grafts[0]["peerId"] != b.ID().String() || grafts[0]["topic"] != "t" {
				t.Fatalf("join %v graft %v", joins[0], grafts[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no join and graft events: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
