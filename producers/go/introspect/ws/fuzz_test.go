package ws

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// FuzzCommand feeds any bytes to the command decoder and the session, before and after HELLO:
// nothing panics, every command gets at least one well-framed answer, a response answers the
// command's own id, and an effective config is always within the protocol's limits.
// `go test` runs the seeds; `go test -run XXX -fuzz FuzzCommand -fuzzminimizetime 1s ./introspect/ws/`
// explores (45 s here: 359k execs, no failure; the default minimisation time stalls the progress line).
func FuzzCommand(f *testing.F) {
	marshal := func(c *pb.ClientCommand) []byte { b, _ := proto.Marshal(c); return b }
	for _, c := range []*pb.ClientCommand{
		cmd(1, pb.ClientCommand_HELLO, 0),
		withConfig(cmd(1, pb.ClientCommand_HELLO, 0), 2000, 120000),
		cmd(2, pb.ClientCommand_REQUEST, pb.ClientCommand_STATE),
		cmd(3, pb.ClientCommand_REQUEST, pb.ClientCommand_RUNTIME),
		cmd(4, pb.ClientCommand_REQUEST, pb.ClientCommand_EVENTS),
		cmd(5, pb.ClientCommand_PUSH_ENABLE, pb.ClientCommand_EVENTS),
		cmd(6, pb.ClientCommand_PUSH_DISABLE, pb.ClientCommand_STATE),
		cmd(7, pb.ClientCommand_PUSH_PAUSE, 0),
		cmd(8, pb.ClientCommand_PUSH_RESUME, 0),
		withConfig(cmd(9, pb.ClientCommand_UPDATE_CONFIG, 0), 1, 1<<63),
		withConfig(cmd(10, pb.ClientCommand_UPDATE_CONFIG, 0), 1<<64-1, 0),
		cmd(11, pb.ClientCommand_Command(6), 0),
		cmd(12, pb.ClientCommand_REQUEST, pb.ClientCommand_Source(-1)),
	} {
		f.Add(marshal(c))
	}
	for _, raw := range [][]byte{nil, {0xff}, {0xff, 0xff, 0xff, 0xff, 0x0f}, {0x10, 0x80}, {0x2a, 0x05, 0x08}, {0x7a, 0x01, 0x00}} {
		f.Add(raw)
	}
	e, err := New(newFakeSource())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	hello := marshal(cmd(99, pb.ClientCommand_HELLO, 0))

	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSession(e, nil)
		defer e.remove(s)
		var out [][]byte
		s.sink = func(b []byte) { out = append(out, b) }
		parsed, decodeErr := decodeCommand(data)
		for i, in := range [][]byte{data, hello, data} {
			before := len(out)
			s.command(in)
			if len(out) == before {
				t.Fatalf("command %d (%x) got no answer", i, in)
			}
			first, err := decodeFrame(out[before])
			if err != nil {
				t.Fatalf("answer %x: %v", out[before], err)
			}
			if r := first.GetResponse(); r != nil {
				want := uint64(99)
				if i != 1 {
					want = 0
					if decodeErr == nil {
						want = parsed.GetId()
					}
				}
				if r.Id != want {
					t.Fatalf("response id %d, want %d", r.Id, want)
				}
				if c := r.GetEffectiveConfig(); c != nil && (c.StateSnapshotIntervalMs < 500 ||
					c.RetentionPeriodMs == 0 || c.RetentionPeriodMs > 120000) {
					t.Fatalf("effective config %v", c)
				}
			}
		}
	})
}
