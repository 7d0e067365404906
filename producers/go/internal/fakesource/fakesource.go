// Package fakesource is a deterministic ws.Source for tests of the endpoint and of its readers:
// a small node whose connections, streams, DHT routing table and events follow a fixed script,
// one step at a time. Only the timestamps come from the clock.
package fakesource

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/ws"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

var protocols = []string{"/ipfs/id/1.0.0", "/ipfs/kad/1.0.0", "/meshsub/1.1.0", "/ipfs/ping/1.0.0"}

type conn struct {
	index    int
	peer     string
	openMs   uint64
	closeMs  uint64 // 0 while open
	outbound bool
	streams  int // how many streams it carries while open
	bytesIn  uint64
	bytesOut uint64
}

// Source is the fake node. Step advances its script; the endpoint calls the rest.
type Source struct {
	mu      sync.Mutex
	peerID  string
	startMs uint64
	step    int
	conns   []*conn
	queries [2][3]uint64 // [inbound, outbound][success, error, timeout]
	in, out uint64       // whole-node traffic
	retired int          // connections closed longer ago than MaxRetention, forgotten
	subs    map[int]func(*pb.Event)
	nextSub int
}

// New returns a node with three open connections.
func New() *Source {
	s := &Source{peerID: PeerID(0), startMs: nowMs(), subs: map[int]func(*pb.Event){}}
	for range 3 {
		s.open()
	}
	return s
}

func nowMs() uint64 { return uint64(time.Now().UnixMilli()) }

const base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// PeerID is the fake peer id number i: base58 text in the shape of an Ed25519 peer id.
func PeerID(i int) string {
	b := []byte("12D3KooW")
	for j := range 44 {
		b = append(b, base58[(i*31+j*7+(i>>3)*j)%len(base58)])
	}
	return string(b)
}

func prop(name string, t pb.EventType_EventProperty_PropertyType, multiple bool) *pb.EventType_EventProperty {
	return &pb.EventType_EventProperty{Name: name, Type: t, HasMultiple: multiple}
}

func eventTypes() []*pb.EventType {
	const (
		str  = pb.EventType_EventProperty_STRING
		num  = pb.EventType_EventProperty_NUMBER
		tm   = pb.EventType_EventProperty_TIME
		peer = pb.EventType_EventProperty_PEERID
	)
	query := func() []*pb.EventType_EventProperty {
		return []*pb.EventType_EventProperty{
			prop("direction", str, false), prop("peerIds", peer, true), prop("queryId", str, false),
			prop("targetPeerId", peer, false), prop("totalTimeMs", num, false), prop("totalSteps", num, false),
			prop("trigger", str, false), prop("type", str, false), prop("result", str, false),
		}
	}
	return []*pb.EventType{
		{Name: "PeerConnecting", PropertyTypes: []*pb.EventType_EventProperty{
			prop("peerId", peer, false), prop("transport", str, false), prop("role", str, false)}},
		{Name: "PeerDisconnecting", PropertyTypes: []*pb.EventType_EventProperty{
			prop("peerId", peer, false), prop("transport", str, false), prop("openTime", tm, false), prop("age", num, false)}},
		{Name: "InboundDHTQuery", PropertyTypes: query()},
		{Name: "OutboundDHTQuery", PropertyTypes: query()},
	}
}

// Runtime implements ws.Source.
func (s *Source) Runtime() *pb.Runtime {
	return &pb.Runtime{
		Implementation: "fake-go-libp2p", Version: "0.0.1", Platform: "go test", PeerId: s.peerID,
		EventTypes: eventTypes(),
	}
}

// Subscribe implements ws.Source.
func (s *Source) Subscribe(fn func(*pb.Event)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// publish is called with mu held; subscribers only queue (ws.Source's contract).
func (s *Source) publish(name string, content map[string]any) {
	text, _ := json.Marshal(content)
	ev := &pb.Event{Type: &pb.EventType{Name: name}, Ts: nowMs(), Content: string(text)}
	for _, fn := range s.subs {
		fn(ev)
	}
}

func (s *Source) open() {
	i := s.retired + len(s.conns) + 1
	c := &conn{index: i, peer: PeerID(i), openMs: nowMs(), outbound: i%2 == 0, streams: i % 4}
	s.conns = append(s.conns, c)
	s.publish("PeerConnecting", map[string]any{"peerId": c.peer, "transport": "tcp", "role": role(c.outbound)})
}

func role(outbound bool) string {
	if outbound {
		return "initiator"
	}
	return "responder"
}

// Step advances the script: traffic on every open connection, a new connection, every third
// step the oldest open one closes, and a DHT query (alternately inbound and outbound).
func (s *Source) Step() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.step++
	kept := s.conns[:0]
	for _, c := range s.conns {
		if c.closeMs == 0 {
			c.bytesIn += uint64(1000 * c.index)
			c.bytesOut += uint64(700 * c.index)
			s.in += uint64(1000 * c.index)
			s.out += uint64(700 * c.index)
		}
		if c.closeMs == 0 || nowMs()-c.closeMs <= uint64(ws.MaxRetention/time.Millisecond) {
			kept = append(kept, c)
		} else {
			s.retired++
		}
	}
	clear(s.conns[len(kept):])
	s.conns = kept
	s.open()
	if s.step%3 == 0 {
		for _, c := range s.conns {
			if c.closeMs == 0 {
				c.closeMs = nowMs()
				s.publish("PeerDisconnecting", map[string]any{
					"peerId": c.peer, "transport": "tcp", "openTime": c.openMs, "age": c.closeMs - c.openMs,
				})
				break
			}
		}
	}
	dir := s.step % 2
	result := []string{"SUCCESS", "ERROR", "TIMEOUT"}[s.step%5%3]
	s.queries[dir][s.step%5%3]++
	name, direction := "InboundDHTQuery", "INBOUND"
	if dir == 1 {
		name, direction = "OutboundDHTQuery", "OUTBOUND"
	}
	s.publish(name, map[string]any{
		"direction": direction, "peerIds": []string{PeerID(s.step + 100), PeerID(s.step + 101)},
		"queryId": fmt.Sprintf("%016x", s.step), "targetPeerId": PeerID(s.step + 200),
		"totalTimeMs": 10 + s.step%50, "totalSteps": 1 + s.step%4,
		"trigger": "API", "type": []string{"CONTENT", "PROVIDER", "VALUE"}[s.step%3], "result": result,
	})
}

// Run steps every period until stop is closed.
func (s *Source) Run(period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.Step()
		}
	}
}

func connID(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

func gauge(in, out uint64) *pb.Traffic {
	return &pb.Traffic{TrafficIn: &pb.DataGauge{CumBytes: in}, TrafficOut: &pb.DataGauge{CumBytes: out}}
}

// State implements ws.Source: open connections, and closed ones within retention.
func (s *Source) State(retention time.Duration) *pb.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := nowMs()
	horizon := now - min(now, uint64(retention/time.Millisecond))
	st := &pb.State{InstantTs: now, StartTs: s.startMs, Subsystems: &pb.Subsystems{}}
	dht := &pb.DHT{
		Protocol: "/ipfs/kad/1.0.0", Enabled: true, StartTs: s.startMs,
		Params:          &pb.DHT_Params{K: 20, Alpha: 3, DisjointPaths: 0, Beta: 3},
		IncomingQueries: &pb.DHT_QueryGauge{Success: s.queries[0][0], Error: s.queries[0][1], Timeout: s.queries[0][2]},
		OutgoingQueries: &pb.DHT_QueryGauge{Success: s.queries[1][0], Error: s.queries[1][1], Timeout: s.queries[1][2]},
	}
	buckets := map[uint32]*pb.DHT_Bucket{}
	for _, c := range s.conns {
		if c.closeMs != 0 && c.closeMs < horizon {
			continue
		}
		pc := &pb.Connection{
			Id: connID(c.index), PeerId: c.peer, TransportId: []byte("ip4+tcp"),
			Endpoints: &pb.EndpointPair{
				SrcMultiaddr: "/ip4/127.0.0.1/tcp/4001",
				DstMultiaddr: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 5000+c.index),
			},
			Timeline: &pb.Connection_Timeline{OpenTs: c.openMs, UpgradedTs: c.openMs, CloseTs: c.closeMs},
			Traffic:  gauge(c.bytesIn, c.bytesOut),
			Attribs:  &pb.Connection_Attributes{Multiplexer: "/yamux/1.0.0", Encryption: "/noise"},
			Streams:  &pb.StreamList{},
		}
		if !c.outbound {
			pc.Role = pb.Role_RESPONDER
		}
		status := pb.DHT_PeerInDHT_ACTIVE
		if c.closeMs != 0 {
			pc.Status = pb.Status_CLOSED
			status = pb.DHT_PeerInDHT_MISSING
		} else {
			for k := range c.streams {
				pc.Streams.Streams = append(pc.Streams.Streams, &pb.Stream{
					Id: connID(c.index*16 + k), Protocol: protocols[k%len(protocols)], Role: pc.Role,
					Timeline: &pb.Stream_Timeline{OpenTs: c.openMs},
					// The observer UI reads every stream's traffic unchecked (it throws without it).
					Traffic: gauge(c.bytesIn/uint64(c.streams), c.bytesOut/uint64(c.streams)),
				})
			}
		}
		st.Subsystems.Connections = append(st.Subsystems.Connections, pc)
		cpl := uint32(c.index % 4)
		if buckets[cpl] == nil {
			buckets[cpl] = &pb.DHT_Bucket{Cpl: cpl}
		}
		buckets[cpl].Peers = append(buckets[cpl].Peers, &pb.DHT_PeerInDHT{
			PeerId: c.peer, Status: status, AgeInBucket: uint32(min(now-c.openMs, 1<<32-1)),
		})
	}
	for cpl := range uint32(4) {
		if b := buckets[cpl]; b != nil {
			dht.Buckets = append(dht.Buckets, b)
		}
	}
	st.Subsystems.Dht = dht
	st.Traffic = gauge(s.in, s.out)
	return st
}
