package ws

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// The protocol's limits on a client's configuration (docs/protocol.md §3, the 2020 Go server's values).
const (
	MinInterval  = 500 * time.Millisecond
	MaxRetention = 120 * time.Second

	DefaultInterval  = time.Second
	DefaultRetention = 120 * time.Second
)

// decodeCommand parses one client message: a bare ClientCommand, no header. The error is the
// one-line text the client gets back in its ERR response.
func decodeCommand(data []byte) (*pb.ClientCommand, error) {
	cmd := &pb.ClientCommand{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("malformed command: %v", err)
	}
	return cmd, nil
}

// clampConfig applies a requested configuration to the current one within the protocol's
// limits; a zero in the request keeps the current value.
func clampConfig(req *pb.Configuration, interval, retention time.Duration) (time.Duration, time.Duration) {
	if req == nil {
		return interval, retention
	}
	if ms := req.GetStateSnapshotIntervalMs(); ms != 0 {
		interval = MinInterval
		if ms > uint64(MinInterval/time.Millisecond) {
			interval = durationMs(ms)
		}
	}
	if ms := req.GetRetentionPeriodMs(); ms != 0 {
		retention = MaxRetention
		if ms < uint64(MaxRetention/time.Millisecond) {
			retention = time.Duration(ms) * time.Millisecond
		}
	}
	return interval, retention
}

// durationMs converts milliseconds a client sent, saturating instead of overflowing.
func durationMs(ms uint64) time.Duration {
	const maxMs = uint64(1<<63-1) / uint64(time.Millisecond)
	if ms > maxMs {
		ms = maxMs
	}
	return time.Duration(ms) * time.Millisecond
}

func response(id uint64, errText string, cfg *pb.Configuration) *pb.ServerMessage {
	r := &pb.CommandResponse{Id: id, EffectiveConfig: cfg}
	if errText != "" {
		r.Result = pb.CommandResponse_ERR
		r.Error = errText
	}
	return serverMessage(r)
}

func configMessage(interval, retention time.Duration) *pb.Configuration {
	return &pb.Configuration{
		RetentionPeriodMs:       uint64(retention / time.Millisecond),
		StateSnapshotIntervalMs: uint64(interval / time.Millisecond),
	}
}
