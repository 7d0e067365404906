// Package pubsub turns go-libp2p-pubsub's topic and mesh changes (join, leave, graft, prune,
// throttle) into introspection Events. Message-level tracing is not here: it is high rate and
// has its own path (pubsub's event tracers, see docs/pubsub.md). Apart from package introspect
// so that an application without pubsub does not import it.
//
//	t := pubsub.NewTracer()
//	ps, _ := gossipsub.NewGossipSub(ctx, h, t.Option())
//	in, _ := introspect.New(h, introspect.WithProvider(t))
package pubsub

import (
	"sync/atomic"
	"time"

	ps "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// Topic names come from the application and, in GRAFT and PRUNE, from remote peers: capped.
const maxTopic = 256

// Tracer is a pubsub RawTracer and an introspect.Provider (it adds events, no State part).
type Tracer struct {
	pub atomic.Pointer[publisher]
}

type publisher struct{ introspect.Publisher }

var (
	_ ps.RawTracer        = (*Tracer)(nil)
	_ introspect.Provider = (*Tracer)(nil)
)

// NewTracer creates a tracer; give its Option to the pubsub constructor and the tracer to introspect.New.
func NewTracer() *Tracer { return &Tracer{} }

// Option is the pubsub option that installs the tracer (pubsub.WithRawTracer; it adds to any other tracer).
func (t *Tracer) Option() ps.Option { return ps.WithRawTracer(t) }

// EventTypes implements introspect.Provider.
func (t *Tracer) EventTypes() []*pb.EventType {
	type props = map[string]pb.EventType_EventProperty_PropertyType
	const (
		s = pb.EventType_EventProperty_STRING
		p = pb.EventType_EventProperty_PEERID
	)
	return []*pb.EventType{
		introspect.EventTypeOf("PubsubJoin", props{"topic": s}),
		introspect.EventTypeOf("PubsubLeave", props{"topic": s}),
		introspect.EventTypeOf("PubsubGraft", props{"peerId": p, "topic": s}),
		introspect.EventTypeOf("PubsubPrune", props{"peerId": p, "topic": s}),
		introspect.EventTypeOf("PubsubThrottlePeer", props{"peerId": p}),
	}
}

// Start implements introspect.Provider.
func (t *Tracer) Start(pub introspect.Publisher) { t.pub.Store(&publisher{pub}) }

// Fill implements introspect.Provider: pubsub has no part in the State.
func (t *Tracer) Fill(*pb.State, time.Time) {}

func (t *Tracer) publish(name string, content map[string]any) {
	if p := t.pub.Load(); p != nil {
		p.Publish(name, content)
	}
}

func capTopic(topic string) string {
	if len(topic) > maxTopic {
		return topic[:maxTopic]
	}
	return topic
}

func (t *Tracer) Join(topic string) {
	t.publish("PubsubJoin", map[string]any{"topic": capTopic(topic)})
}
func (t *Tracer) Leave(topic string) {
	t.publish("PubsubLeave", map[string]any{"topic": capTopic(topic)})
}

func (t *Tracer) Graft(p peer.ID, topic string) {
	t.publish("PubsubGraft", map[string]any{"peerId": p.String(), "topic": capTopic(topic)})
}

func (t *Tracer) Prune(p peer.ID, topic string) {
	t.publish("PubsubPrune", map[string]any{"peerId": p.String(), "topic": capTopic(topic)})
}

func (t *Tracer) ThrottlePeer(p peer.ID) {
	t.publish("PubsubThrottlePeer", map[string]any{"peerId": p.String()})
}

// The rest of the RawTracer interface: message and RPC level, not turned into events here.

func (t *Tracer) OnNewOutboundStream(peer.ID, protocol.ID)         {}
func (t *Tracer) OnClosedOutboundStream(peer.ID)                   {}
func (t *Tracer) ValidateMessage(*ps.Message)                      {}
func (t *Tracer) DeliverMessage(*ps.Message)                       {}
func (t *Tracer) RejectMessage(*ps.Message, string)                {}
func (t *Tracer) DuplicateMessage(*ps.Message)                     {}
func (t *Tracer) RecvRPC(*ps.RPC)                                  {}
func (t *Tracer) SendRPC(*ps.RPC, peer.ID)                         {}
func (t *Tracer) SendRPCCompleted(*ps.RPC, peer.ID, time.Duration) {}
func (t *Tracer) DropRPC(*ps.RPC, peer.ID)                         {}
func (t *Tracer) UndeliverableMessage(*ps.Message)                 {}
