// Command introspect-fake serves a deterministic fake node (internal/fakesource) with the Go
// introspection endpoint, for interoperability tests: it prints the endpoint's URL on stdout,
// then serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/internal/fakesource"
	"github.com/libp2p-exporter/libp2p-exporter/producers/go/introspect/ws"
)

func main() {
	listen := flag.String("listen", ws.DefaultListenAddr, "host:port to serve on")
	step := flag.Duration("step", 250*time.Millisecond, "how often the fake node's script advances")
	flag.Parse()

	src := fakesource.New()
	e, err := ws.New(src, ws.ListenAddr(*listen))
	if err != nil {
		fmt.Fprintln(os.Stderr, "introspect-fake:", err)
		os.Exit(1)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); src.Run(*step, stop) }()
	fmt.Println(e.URL())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	close(stop)
	<-done
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "introspect-fake:", err)
		os.Exit(1)
	}
}
