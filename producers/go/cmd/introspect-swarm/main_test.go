package main

import (
	"bufio"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// The built binary: one NAME=URL line per host once ready, the config file, each URL serving
// introspection with the go-libp2p version the binary was built with, a clean exit on SIGTERM.
func TestSwarmBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "introspect-swarm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "targets.yml")
	cmd := exec.Command(bin, "-n", "3", "-churn", "500ms", "-duration", "60s", "-config-out", cfg)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	lines := make(chan string, 3)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var urls []string
	for len(urls) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stdout ended after %d lines", len(urls))
			}
			name, url, _ := strings.Cut(l, "=")
			if !strings.HasPrefix(name, "go-") || !strings.HasPrefix(url, "ws://127.0.0.1:") || !strings.HasSuffix(url, "/introspect") {
				t.Fatalf("line %q", l)
			}
			urls = append(urls, url)
		case <-time.After(60 * time.Second):
			t.Fatal("no ready lines")
		}
	}
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range urls {
		if !strings.Contains(string(body), "url: "+u+"\n    name: go-"+string(rune('0'+i))) {
			t.Fatalf("config lacks %s:\n%s", u, body)
		}
	}
	rt := runtimeOf(t, urls[0])
	if rt.GetImplementation() != "go-libp2p" || rt.GetVersion() != "v0.52.0" {
		t.Fatalf("runtime %v: want go-libp2p v0.52.0 (the pinned module)", rt)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGTERM")
	}
}

func runtimeOf(t *testing.T, url string) *pb.Runtime {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rt *pb.Runtime
	for id, cmd := range []pb.ClientCommand_Command{pb.ClientCommand_HELLO, pb.ClientCommand_REQUEST} {
		data, _ := proto.Marshal(&pb.ClientCommand{Id: uint64(id + 1), Command: cmd, Source: pb.ClientCommand_RUNTIME})
		if err := conn.WriteMessage(websocket.BinaryMessage, data); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, frame, err := conn.ReadMessage()
		if err != nil || len(frame) < 12 {
			t.Fatalf("read: %v", err)
		}
		msg := &pb.ServerMessage{}
		if err := proto.Unmarshal(frame[12:12+binary.LittleEndian.Uint32(frame[8:])], msg); err != nil {
			t.Fatal(err)
		}
		rt = msg.GetRuntime()
	}
	return rt
}
