package introspect

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// wsClient speaks the protocol's client side: bare ClientCommands out, framed ServerMessages in.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	id   uint64
}

func dial(t *testing.T, url string) *wsClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(cmd pb.ClientCommand_Command, src pb.ClientCommand_Source) {
	c.t.Helper()
	c.id++
	data, err := proto.Marshal(&pb.ClientCommand{Id: c.id, Command: cmd, Source: src})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.conn.WriteMessage(websocket.BinaryMessage, data); err != nil {
		c.t.Fatal(err)
	}
}

// next reads one message: version 1, the checksum checked, one ServerMessage.
func (c *wsClient) next() *pb.ServerMessage {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatal(err)
	}
	if len(data) < 12 || binary.LittleEndian.Uint32(data) != 1 {
		c.t.Fatalf("frame %x", data[:min(len(data), 12)])
	}
	sum, n := binary.LittleEndian.Uint32(data[4:]), binary.LittleEndian.Uint32(data[8:])
	payload := data[12:]
	if int(n) != len(payload) {
		c.t.Fatalf("length %d, frame holds %d", n, len(payload))
	}
	h := uint32(0x811c9dc5)
	for _, b := range payload {
		h = (h ^ uint32(b)) * 0x01000193
	}
	if h != sum {
		c.t.Fatalf("checksum %08x, want %08x", sum, h)
	}
	msg := &pb.ServerMessage{}
	if err := proto.Unmarshal(payload, msg); err != nil {
		c.t.Fatal(err)
	}
	return msg
}

// Two hosts, one introspected through its real endpoint: a client reads the Runtime and a State
// that holds the connection to the other host, with its stream, over the wire.
func TestSessionOverWebSocket(t *testing.T) {
	p := newProbe(t)
	a := newHost(t, p)
	b := newHost(t, nil)
	in, err := New(a, WithProbe(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	connectOver(t, a, b, "tcp")
	roundTrip(t, a, b.ID(), 64)

	c := dial(t, in.URL())
	c.send(pb.ClientCommand_HELLO, pb.ClientCommand_STATE)
	if r := c.next().GetResponse(); r == nil || r.Result != pb.CommandResponse_OK {
		t.Fatalf("HELLO: %v", r)
	}
	c.send(pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME)
	rt := c.next().GetRuntime()
	if rt.GetPeerId() != a.ID().String() || rt.GetImplementation() != "go-libp2p" {
		t.Fatalf("runtime %v", rt)
	}
	var conn *pb.Connection
	until(t, "the connection and its echo stream in a State over the wire", func() bool {
		c.send(pb.ClientCommand_REQUEST, pb.ClientCommand_STATE)
		st := c.next().GetState()
		if st == nil {
			t.Fatal("REQUEST STATE answered without a State")
		}
		for _, cn := range st.GetSubsystems().GetConnections() {
			if cn.PeerId == b.ID().String() {
				for _, s := range cn.GetStreams().GetStreams() {
					if s.Protocol == echo && s.Status == pb.Status_CLOSED {
						conn = cn
						return true
					}
				}
			}
		}
		return false
	})
	if conn.Timeline.GetOpenTs() == 0 || isUnmeasured(conn.Traffic) {
		t.Fatalf("connection over the wire lost its probe fields: %v", conn)
	}
}
