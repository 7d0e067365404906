package introspect

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkState is the cost of one State (what a client at a 1 s interval asks for once a
// second) on a host with N connections, each with one open stream, the probe installed. The
// peers are hosts in this process: a figure for the introspector's own work, not for a host's
// whole CPU (bench/ has no Go-host benchmark yet). Take figures on a quiet machine:
//
//	go test -run XXX -bench BenchmarkState -benchmem ./introspect/
func BenchmarkState(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			p, err := NewProbe()
			if err != nil {
				b.Fatal(err)
			}
			a := newHostB(b, p)
			in, err := New(a, NoEndpoint(), WithProbe(p))
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for range n {
				peerHost := newHostB(b, nil)
				connectOver(b, a, peerHost, "tcp")
				if _, err := a.NewStream(ctx, peerHost.ID(), echo); err != nil {
					b.Fatal(err)
				}
			}
			in.State(time.Minute)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if st := in.State(time.Minute); len(st.Subsystems.Connections) < n {
					b.Fatalf("%d connections", len(st.Subsystems.Connections))
				}
			}
		})
	}
}
