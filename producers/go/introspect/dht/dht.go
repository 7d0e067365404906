// Package dht adds a go-libp2p-kad-dht's routing table and queries to an introspect.Introspector:
// the State's DHT part (buckets by common prefix length, query counters) and the
// OutboundDHTQuery / InboundDHTQuery events. It lives apart so an application without kad-dht
// does not import it.
//
//	t := dht.NewTracker()
//	d, _ := kaddht.New(h, t.Option())   // sees the requests the host serves
//	q := t.Wrap(d)                            // use q for the host's own queries
//	in, _ := introspect.New(h, introspect.WithProvider(t))
package dht

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	kadpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/mr-tron/base58/base58"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// A remote peer chooses the keys it asks for: events carry them capped.
const (
	maxKey   = 256
	maxPeers = 64
)

// Tracker is an introspect.Provider for one kad-dht.
type Tracker struct {
	start    time.Time
	protocol atomic.Pointer[string]
	pub      atomic.Pointer[publisher]
	seq      atomic.Uint64

	mu      sync.Mutex
	d       *kaddht.IpfsDHT
	out     [3]uint64 // success, error, timeout
	inbound uint64    // requests served (their outcome is not visible: see Fill)
}

type publisher struct{ introspect.Publisher }

var _ introspect.Provider = (*Tracker)(nil)

// NewTracker creates a tracker; give its Option to kaddht.New and the tracker to introspect.New.
func NewTracker() *Tracker {
	t := &Tracker{start: time.Now()}
	p := string(kaddht.ProtocolDHT)
	t.protocol.Store(&p)
	return t
}

// Option is the kaddht.New option that lets the tracker see every request the host serves
// (kaddht.OnRequestHook: called before the handler, so it sees the request, not its outcome).
func (t *Tracker) Option() kaddht.Option { return kaddht.OnRequestHook(t.onRequest) }

// Wrap attaches the tracker to d (its routing table goes into States) and returns d with the
// query methods counted; use it for the host's own queries. The DHT's internal lookups
// (bootstrap, refresh) do not go through it and are not counted.
func (t *Tracker) Wrap(d *kaddht.IpfsDHT) *DHT {
	t.mu.Lock()
	t.d = d
	t.mu.Unlock()
	return &DHT{IpfsDHT: d, t: t}
}

// EventTypes implements introspect.Provider.
func (t *Tracker) EventTypes() []*pb.EventType {
	type props = map[string]pb.EventType_EventProperty_PropertyType
	const (
		s = pb.EventType_EventProperty_STRING
		n = pb.EventType_EventProperty_NUMBER
		p = pb.EventType_EventProperty_PEERID
	)
	return []*pb.EventType{
		introspect.EventTypeOf("OutboundDHTQuery", props{
			"direction": s, "peerIds": p, "queryId": s, "targetPeerId": p, "key": s,
			"totalTimeMs": n, "totalSteps": n, "trigger": s, "type": s, "result": s,
		}, "peerIds"),
		introspect.EventTypeOf("InboundDHTQuery", props{
			"direction": s, "peerIds": p, "queryId": s, "targetPeerId": p, "key": s,
			"trigger": s, "type": s,
		}, "peerIds"),
	}
}

// Start implements introspect.Provider.
func (t *Tracker) Start(pub introspect.Publisher) { t.pub.Store(&publisher{pub}) }

func (t *Tracker) publish(name string, content map[string]any) {
	if p := t.pub.Load(); p != nil {
		p.Publish(name, content)
	}
}

// Fill implements introspect.Provider: the routing table and the query counters.
func (t *Tracker) Fill(st *pb.State, now time.Time) {
	t.mu.Lock()
	d := t.d
	out := t.out
	t.mu.Unlock()
	if d == nil {
		return
	}
	part := &pb.DHT{
		Protocol: *t.protocol.Load(),
		Enabled:  true,
		StartTs:  uint64(t.start.UnixMilli()),
		// alpha and beta are kad-dht settings without a getter: left unset.
		Params:          &pb.DHT_Params{K: uint64(d.BucketSize())},
		OutgoingQueries: &pb.DHT_QueryGauge{Success: out[0], Error: out[1], Timeout: out[2]},
		// IncomingQueries stays unset: OnRequestHook runs before the handler and kad-dht
		// reports no outcome, so served requests are events (InboundDHTQuery) without a result.
	}
	self := kb.ConvertPeerID(d.PeerID())
	net := d.Host().Network()
	byCpl := map[uint32][]*pb.DHT_PeerInDHT{}
	for _, pi := range d.RoutingTable().GetPeerInfos() {
		cpl := uint32(kb.CommonPrefixLen(self, kb.ConvertPeerID(pi.Id)))
		status := pb.DHT_PeerInDHT_MISSING
		if net.Connectedness(pi.Id) == network.Connected {
			status = pb.DHT_PeerInDHT_ACTIVE
		}
		age := now.Sub(pi.AddedAt).Milliseconds()
		byCpl[cpl] = append(byCpl[cpl], &pb.DHT_PeerInDHT{
			PeerId: pi.Id.String(), Status: status, AgeInBucket: uint32(min(max(age, 0), math.MaxUint32)),
		})
	}
	cpls := make([]uint32, 0, len(byCpl))
	for c := range byCpl {
		cpls = append(cpls, c)
	}
	slices.Sort(cpls)
	for _, c := range cpls {
		part.Buckets = append(part.Buckets, &pb.DHT_Bucket{Cpl: c, Peers: byCpl[c]})
	}
	if st.Subsystems == nil {
		st.Subsystems = &pb.Subsystems{}
	}
	st.Subsystems.Dht = part
}

// Served is the number of requests the host has served since the tracker started.
func (t *Tracker) Served() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inbound
}

// Outbound are the host's own queries by result: success, error, timeout.
func (t *Tracker) Outbound() [3]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out
}

func (t *Tracker) onRequest(_ context.Context, s network.Stream, req *kadpb.Message) {
	if p := string(s.Protocol()); p != "" && p != *t.protocol.Load() {
		t.protocol.Store(&p)
	}
	t.mu.Lock()
	t.inbound++
	t.mu.Unlock()
	qtype, target, key := requestOf(req)
	t.publish("InboundDHTQuery", map[string]any{
		"direction":    "INBOUND",
		"peerIds":      []string{s.Conn().RemotePeer().String()},
		"queryId":      t.queryID(),
		"targetPeerId": target,
		"key":          key,
		"trigger":      "API",
		"type":         qtype,
	})
}

func (t *Tracker) queryID() string { return fmt.Sprintf("q%d", t.seq.Add(1)) }

// requestOf is a request's type in the observer's words (PEER and PING extend its
// CONTENT/PROVIDER/VALUE, as the py-libp2p provider does) and its key, as a peer id when it is one.
func requestOf(m *kadpb.Message) (qtype, target, key string) {
	switch m.GetType() {
	case kadpb.Message_PUT_VALUE, kadpb.Message_GET_VALUE:
		qtype = "VALUE"
	case kadpb.Message_ADD_PROVIDER, kadpb.Message_GET_PROVIDERS:
		qtype = "PROVIDER"
	case kadpb.Message_FIND_NODE:
		qtype = "PEER"
	case kadpb.Message_PING:
		qtype = "PING"
	}
	raw := m.GetKey()
	if m.GetType() == kadpb.Message_FIND_NODE {
		if id, err := peer.IDFromBytes(raw); err == nil {
			return qtype, id.String(), ""
		}
	}
	return qtype, "", keyText(raw)
}

// keyText is printable keys as they are, other bytes in base58; capped.
func keyText(raw []byte) string {
	text := ""
	printable := utf8.Valid(raw)
	for _, b := range raw {
		if b < 32 || b == 127 {
			printable = false
			break
		}
	}
	if printable {
		text = string(raw)
	} else if len(raw) > 0 {
		text = base58.Encode(raw)
	}
	if len(text) > maxKey {
		text = text[:maxKey]
	}
	return text
}

// query runs one of the host's own queries, counts it by result and publishes its event.
// A query cancelled by the caller (shutdown) is not a result and is not counted.
func (t *Tracker) query(ctx context.Context, qtype, target, key string, call func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	qctx, events := routing.RegisterForQueryEvents(ctx)
	var (
		asked   []string
		steps   int
		drained = make(chan struct{})
	)
	go func() { // kad-dht blocks on a full event channel: read it until the query is over
		defer close(drained)
		for ev := range events {
			if ev.Type == routing.SendingQuery {
				steps++
				if len(asked) < maxPeers {
					asked = append(asked, ev.ID.String())
				}
			}
		}
	}()
	begin := time.Now()
	err := call(qctx)
	took := time.Since(begin)
	cancel()
	<-drained
	result := 0
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		result = 2
	case errors.Is(err, context.Canceled):
		return err
	default:
		result = 1
	}
	t.mu.Lock()
	t.out[result]++
	t.mu.Unlock()
	if asked == nil {
		asked = []string{}
	}
	t.publish("OutboundDHTQuery", map[string]any{
		"direction":    "OUTBOUND",
		"peerIds":      asked,
		"queryId":      t.queryID(),
		"targetPeerId": target,
		"key":          key,
		"totalTimeMs":  took.Milliseconds(),
		"totalSteps":   steps,
		"trigger":      "API",
		"type":         qtype,
		"result":       [3]string{"SUCCESS", "ERROR", "TIMEOUT"}[result],
	})
	return err
}

// DHT is a kad-dht whose query methods are counted by its Tracker; every other method is the
// DHT's own.
type DHT struct {
	*kaddht.IpfsDHT
	t *Tracker
}

func (d *DHT) FindPeer(ctx context.Context, id peer.ID) (pi peer.AddrInfo, err error) {
	err = d.t.query(ctx, "PEER", id.String(), "", func(ctx context.Context) error {
		pi, err = d.IpfsDHT.FindPeer(ctx, id)
		return err
	})
	return pi, err
}

func (d *DHT) GetClosestPeers(ctx context.Context, key string) (ids []peer.ID, err error) {
	target, text := "", keyText([]byte(key))
	if id, perr := peer.IDFromBytes([]byte(key)); perr == nil {
		target, text = id.String(), ""
	}
	err = d.t.query(ctx, "PEER", target, text, func(ctx context.Context) error {
		ids, err = d.IpfsDHT.GetClosestPeers(ctx, key)
		return err
	})
	return ids, err
}

func (d *DHT) GetValue(ctx context.Context, key string, opts ...routing.Option) (v []byte, err error) {
	err = d.t.query(ctx, "VALUE", "", keyText([]byte(key)), func(ctx context.Context) error {
		v, err = d.IpfsDHT.GetValue(ctx, key, opts...)
		return err
	})
	return v, err
}

func (d *DHT) PutValue(ctx context.Context, key string, value []byte, opts ...routing.Option) error {
	return d.t.query(ctx, "VALUE", "", keyText([]byte(key)), func(ctx context.Context) error {
		return d.IpfsDHT.PutValue(ctx, key, value, opts...)
	})
}

func (d *DHT) Provide(ctx context.Context, c cid.Cid, brdcst bool) error {
	return d.t.query(ctx, "PROVIDER", "", c.String(), func(ctx context.Context) error {
		return d.IpfsDHT.Provide(ctx, c, brdcst)
	})
}

func (d *DHT) FindProviders(ctx context.Context, c cid.Cid) (ps []peer.AddrInfo, err error) {
	err = d.t.query(ctx, "PROVIDER", "", c.String(), func(ctx context.Context) error {
		ps, err = d.IpfsDHT.FindProviders(ctx, c)
		return err
	})
	return ps, err
}
