// Command loopback-peers runs N plain go-libp2p hosts in one process, each dialling one target
// and opening a short stream to it now and then: the load for bench/go_host_cost.py, whose
// measured host (introspect-node) then holds N connections from one process of peers. The peers
// neither listen nor serve introspection, and go-libp2p's metrics are off in them (one process,
// many hosts: they would add up). When every host is connected it prints {"connected": N}; SIGINT
// or SIGTERM stops it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("loopback-peers: ")
	n := flag.Int("n", 10, "hosts in this process")
	target := flag.String("target", "", "the target's multiaddr with /p2p/ID")
	proto := flag.String("protocol", "/e2e/echo/1.0.0", "protocol of the short streams (the target echoes)")
	every := flag.Duration("streams-every", 10*time.Second, "each host opens one short stream this often (0: never)")
	parallel := flag.Int("parallel", 16, "dials at once while connecting")
	flag.Parse()
	ai, err := peer.AddrInfoFromString(*target)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "loopback-peers: -target %q: %v\n", *target, err)
		os.Exit(2)
	case *n < 1 || *n > 2000 || *parallel < 1 || *every < 0:
		fmt.Fprintln(os.Stderr, "loopback-peers: want 1 <= -n <= 2000, -parallel >= 1, -streams-every >= 0")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *ai, protocol.ID(*proto), *every, *parallel); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, target peer.AddrInfo, proto protocol.ID, every time.Duration, parallel int) error {
	hosts := make([]host.Host, n)
	defer func() {
		for _, h := range hosts {
			if h != nil {
				_ = h.Close()
			}
		}
	}()
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		first  atomic.Pointer[error]
		slots  = make(chan struct{}, parallel)
	)
	for i := range hosts {
		h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableMetrics())
		if err != nil {
			return err
		}
		hosts[i] = h
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := h.Connect(dctx, target); err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d hosts could not connect: %w", f, n, *first.Load())
	}
	line, _ := json.Marshal(map[string]int{"connected": n})
	fmt.Println(string(line))
	if every > 0 {
		for _, h := range hosts {
			go streams(ctx, h, target.ID, proto, every)
		}
	}
	<-ctx.Done()
	return nil
}

// streams opens one short stream to p every period (the first after a random part of it, so the
// hosts do not all open theirs at once): one byte sent and echoed back, then closed.
func streams(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, every time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(rand.N(every)):
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := exchange(ctx, h, p, proto); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			log.Printf("stream: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func exchange(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	buf := []byte{1}
	if _, err := s.Write(buf); err != nil {
		_ = s.Reset()
		return err
	}
	if _, err := io.ReadFull(s, buf); err != nil {
		_ = s.Reset()
		return err
	}
	return s.CloseWrite()
}
