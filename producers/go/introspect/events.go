package introspect

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// Remote peers choose agent strings, protocol ids and address lists: events carry them capped.
const (
	maxText  = 256
	maxItems = 64
)

// EventTypeOf builds an EventType; props maps a JSON key to its type, and keys listed in
// multiple hold arrays.
func EventTypeOf(name string, props map[string]pb.EventType_EventProperty_PropertyType, multiple ...string) *pb.EventType {
	many := map[string]bool{}
	for _, m := range multiple {
		many[m] = true
	}
	et := &pb.EventType{Name: name}
	for _, key := range slices.Sorted(maps.Keys(props)) {
		et.PropertyTypes = append(et.PropertyTypes, &pb.EventType_EventProperty{Name: key, Type: props[key], HasMultiple: many[key]})
	}
	return et
}

const (
	tString = pb.EventType_EventProperty_STRING
	tNumber = pb.EventType_EventProperty_NUMBER
	tTime   = pb.EventType_EventProperty_TIME
	tPeer   = pb.EventType_EventProperty_PEERID
)

// baseEventTypes are the connection events the observer UI knows, from the swarm's notifications.
func baseEventTypes() []*pb.EventType {
	return []*pb.EventType{
		EventTypeOf("PeerConnecting", map[string]pb.EventType_EventProperty_PropertyType{
			"peerId": tPeer, "transport": tString, "role": tString}),
		EventTypeOf("PeerDisconnecting", map[string]pb.EventType_EventProperty_PropertyType{
			"peerId": tPeer, "transport": tString, "openTime": tTime, "age": tNumber}),
	}
}

// busEventTypes are the event bus events converted below, named after their Go types with Go
// field names as keys (as the 2020 Go server did). Addresses are declared STRING: the observer
// UI has no column for the schema's MULTIADDR type.
func busEventTypes() []*pb.EventType {
	type props = map[string]pb.EventType_EventProperty_PropertyType
	return []*pb.EventType{
		EventTypeOf("EvtPeerConnectednessChanged", props{"Peer": tPeer, "Connectedness": tString}),
		EventTypeOf("EvtPeerIdentificationCompleted", props{
			"Peer": tPeer, "Conn": tString, "AgentVersion": tString, "ProtocolVersion": tString,
			"Protocols": tString, "ListenAddrs": tString, "ObservedAddr": tString,
		}, "Protocols", "ListenAddrs"),
		EventTypeOf("EvtPeerIdentificationFailed", props{"Peer": tPeer, "Reason": tString}),
		EventTypeOf("EvtPeerProtocolsUpdated", props{"Peer": tPeer, "Added": tString, "Removed": tString}, "Added", "Removed"),
		EventTypeOf("EvtLocalProtocolsUpdated", props{"Added": tString, "Removed": tString}, "Added", "Removed"),
		EventTypeOf("EvtLocalAddressesUpdated", props{"Current": tString, "Removed": tString}, "Current", "Removed"),
		EventTypeOf("EvtLocalReachabilityChanged", props{"Reachability": tString}),
		EventTypeOf("EvtNATDeviceTypeChanged", props{"TransportProtocol": tString, "NatDeviceType": tString}),
	}
}

// busContent turns an event bus event into an Event's name and JSON content; ok is false for
// types not converted here (they are skipped: their fields may hold connections or other
// objects that do not belong in JSON).
func busContent(e any) (name string, content map[string]any, ok bool) {
	switch ev := e.(type) {
	case event.EvtPeerConnectednessChanged:
		return "EvtPeerConnectednessChanged", map[string]any{"Peer": ev.Peer.String(), "Connectedness": ev.Connectedness.String()}, true
	case event.EvtPeerIdentificationCompleted:
		c := map[string]any{
			"Peer":            ev.Peer.String(),
			"AgentVersion":    capText(ev.AgentVersion),
			"ProtocolVersion": capText(ev.ProtocolVersion),
			"Protocols":       protoList(ev.Protocols),
			"ListenAddrs":     addrList(ev.ListenAddrs),
		}
		if ev.Conn != nil {
			c["Conn"] = ev.Conn.ID()
		}
		if ev.ObservedAddr != nil {
			c["ObservedAddr"] = capText(ev.ObservedAddr.String())
		}
		return "EvtPeerIdentificationCompleted", c, true
	case event.EvtPeerIdentificationFailed:
		reason := ""
		if ev.Reason != nil {
			reason = capText(ev.Reason.Error())
		}
		return "EvtPeerIdentificationFailed", map[string]any{"Peer": ev.Peer.String(), "Reason": reason}, true
	case event.EvtPeerProtocolsUpdated:
		return "EvtPeerProtocolsUpdated", map[string]any{"Peer": ev.Peer.String(), "Added": protoList(ev.Added), "Removed": protoList(ev.Removed)}, true
	case event.EvtLocalProtocolsUpdated:
		return "EvtLocalProtocolsUpdated", map[string]any{"Added": protoList(ev.Added), "Removed": protoList(ev.Removed)}, true
	case event.EvtLocalAddressesUpdated:
		cur := make([]ma.Multiaddr, 0, len(ev.Current))
		for _, a := range ev.Current {
			cur = append(cur, a.Address)
		}
		rem := make([]ma.Multiaddr, 0, len(ev.Removed))
		for _, a := range ev.Removed {
			rem = append(rem, a.Address)
		}
		return "EvtLocalAddressesUpdated", map[string]any{"Current": addrList(cur), "Removed": addrList(rem)}, true
	case event.EvtLocalReachabilityChanged:
		return "EvtLocalReachabilityChanged", map[string]any{"Reachability": ev.Reachability.String()}, true
	case event.EvtNATDeviceTypeChanged:
		return "EvtNATDeviceTypeChanged", map[string]any{"TransportProtocol": ev.TransportProtocol.String(), "NatDeviceType": ev.NatDeviceType.String()}, true
	}
	return "", nil, false
}

func capText(s string) string {
	if len(s) > maxText {
		return s[:maxText]
	}
	return s
}

func protoList(ps []protocol.ID) []string {
	out := make([]string, 0, min(len(ps), maxItems))
	for i, p := range ps {
		if i == maxItems {
			break
		}
		out = append(out, capText(string(p)))
	}
	return out
}

func addrList(as []ma.Multiaddr) []string {
	out := make([]string, 0, min(len(as), maxItems))
	for _, a := range as {
		if len(out) == maxItems {
			break
		}
		if a != nil {
			out = append(out, capText(a.String()))
		}
	}
	return out
}

// subscribeBus forwards the host's event bus to pub until the returned stop is called.
func subscribeBus(bus event.Bus, pub Publisher) (func(), error) {
	// A roomy buffer: the bus blocks its emitters while a subscriber's channel is full.
	sub, err := bus.Subscribe(event.WildcardSubscription, eventbus.Name("libp2p-exporter/introspect"), eventbus.BufSize(256))
	if err != nil {
		return nil, err
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e := <-sub.Out():
				if name, content, ok := busContent(e); ok {
					pub.Publish(name, content)
				}
			case <-stop:
				return
			}
		}
	}()
	// A wildcard subscription's Close does not close its channel: stop the reader ourselves.
	return func() { close(stop); <-done; _ = sub.Close() }, nil
}

// events fans published events out to subscribers. Subscribers must not block (ws.Source).
type events struct {
	mu   sync.Mutex
	next int
	subs map[int]func(*pb.Event)
}

func newEvents() *events { return &events{subs: map[int]func(*pb.Event){}} }

func (e *events) subscribe(fn func(*pb.Event)) func() {
	e.mu.Lock()
	id := e.next
	e.next++
	e.subs[id] = fn
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
	}
}

func (e *events) publish(name string, content map[string]any) {
	e.mu.Lock()
	n := len(e.subs)
	e.mu.Unlock()
	if n == 0 {
		return // nobody listens: do not even marshal
	}
	body, err := json.Marshal(content)
	if err != nil {
		body = []byte("{}")
	}
	ev := &pb.Event{Type: &pb.EventType{Name: name}, Ts: ms(time.Now()), Content: string(body)}
	e.mu.Lock()
	fns := make([]func(*pb.Event), 0, len(e.subs))
	for _, fn := range e.subs {
		fns = append(fns, fn)
	}
	e.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}
