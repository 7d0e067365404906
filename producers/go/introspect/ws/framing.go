package ws

import (
	"encoding/binary"

	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// ProtocolVersion is the version every frame starts with and every ServerMessage carries.
const ProtocolVersion = 1

// headerSize is the wire segment header: version, FNV-1a 32 of the payload, payload length (u32 LE each).
const headerSize = 12

const (
	fnvOffset32 = 0x811c9dc5
	fnvPrime32  = 0x01000193
)

// fnv1a32 is the protocol's payload checksum. hash/fnv would do the same, but through an
// interface and an allocation per frame; this is the whole algorithm.
func fnv1a32(data []byte) uint32 {
	h := uint32(fnvOffset32)
	for _, b := range data {
		h ^= uint32(b)
		h *= fnvPrime32
	}
	return h
}

// appendSegment frames one marshalled ServerMessage for the wire: the 12-byte header, then the payload.
func appendSegment(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, ProtocolVersion)
	dst = binary.LittleEndian.AppendUint32(dst, fnv1a32(payload))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// encodeMessage marshals msg (its version set to ProtocolVersion) into one WebSocket message
// holding one segment, as the Python Endpoint sends them.
func encodeMessage(msg *pb.ServerMessage) ([]byte, error) {
	msg.Version = &pb.Version{Version: ProtocolVersion}
	payload, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return appendSegment(make([]byte, 0, headerSize+len(payload)), payload), nil
}

func serverMessage(payload any) *pb.ServerMessage {
	msg := &pb.ServerMessage{}
	switch p := payload.(type) {
	case *pb.State:
		msg.Payload = &pb.ServerMessage_State{State: p}
	case *pb.Runtime:
		msg.Payload = &pb.ServerMessage_Runtime{Runtime: p}
	case *pb.Event:
		msg.Payload = &pb.ServerMessage_Event{Event: p}
	case *pb.CommandResponse:
		msg.Payload = &pb.ServerMessage_Response{Response: p}
	case *pb.ServerNotice:
		msg.Payload = &pb.ServerMessage_Notice{Notice: p}
	default:
		panic("ws: not a ServerMessage payload")
	}
	return msg
}
