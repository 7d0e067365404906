package ws

import (
	"errors"
	"time"
)

// The budgets, the same as the Python Endpoint's EndpointOptions (exporter/introspector/endpoint.py).
const (
	DefaultMaxClients        = 16
	DefaultMaxPendingClients = 4
	DefaultEventQueue        = 256 // per client, as in the 2020 Go server
	DefaultPauseQueue        = 4096
	DefaultMaxCommandBytes   = 64 * 1024
	DefaultMaxBadCommands    = 32
	DefaultHelloTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// closeWait is how long a closing session waits for the client's close frame (and how long the
// close frame itself may take to write) before the connection is dropped.
const closeWait = time.Second

type config struct {
	listenAddr       string
	maxClients       int
	maxPending       int
	eventQueue       int
	pauseQueue       int
	maxCommandBytes  int64
	maxBadCommands   int
	helloTimeout     time.Duration
	idleTimeout      time.Duration
	defaultInterval  time.Duration
	defaultRetention time.Duration
	clock            func() time.Time // ages the pause queue; tests replace it
}

func defaultConfig() config {
	return config{
		listenAddr:       DefaultListenAddr,
		maxClients:       DefaultMaxClients,
		maxPending:       DefaultMaxPendingClients,
		eventQueue:       DefaultEventQueue,
		pauseQueue:       DefaultPauseQueue,
		maxCommandBytes:  DefaultMaxCommandBytes,
		maxBadCommands:   DefaultMaxBadCommands,
		helloTimeout:     DefaultHelloTimeout,
		idleTimeout:      DefaultIdleTimeout,
		defaultInterval:  DefaultInterval,
		defaultRetention: DefaultRetention,
		clock:            time.Now,
	}
}

// Option configures an Endpoint.
type Option func(*config) error

// ListenAddr sets the TCP address to listen on (host:port; port 0 picks a free one).
func ListenAddr(addr string) Option {
	return func(c *config) error { c.listenAddr = addr; return nil }
}

// MaxClients caps the sessions that have said HELLO. A HELLO beyond it is answered with ERR
// "client limit reached" and the connection is closed.
func MaxClients(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("ws: MaxClients must be at least 1")
		}
		c.maxClients = n
		return nil
	}
}

// MaxPendingClients caps the connections that have not said HELLO yet. They live in a pool of
// their own, so silent connections can never take the slots of clients that did say HELLO; when
// a connection arrives and this pool is full, the oldest pending connection is closed.
func MaxPendingClients(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("ws: MaxPendingClients must be at least 1")
		}
		c.maxPending = n
		return nil
	}
}

// EventQueue bounds the events waiting to be sent to one client. When it is full, further
// events are dropped for that client and it gets a DISCARDING_EVENTS notice.
func EventQueue(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("ws: EventQueue must be at least 1")
		}
		c.eventQueue = n
		return nil
	}
}

// PauseQueue bounds what a paused client has queued (States and events), on top of the pruning
// to its retention period.
func PauseQueue(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("ws: PauseQueue must be at least 1")
		}
		c.pauseQueue = n
		return nil
	}
}

// MaxCommandBytes caps one client message. A message of exactly n bytes is accepted; a larger
// one closes the session with status 1009 (message too big).
func MaxCommandBytes(n int64) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("ws: MaxCommandBytes must be at least 1")
		}
		c.maxCommandBytes = n
		return nil
	}
}

// MaxBadCommands closes a session (1008) after this many bad commands in a row.
func MaxBadCommands(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("ws: MaxBadCommands must be at least 1")
		}
		c.maxBadCommands = n
		return nil
	}
}

// HelloTimeout closes (1008) a connection that has not said HELLO this long after the upgrade.
// 0 turns the deadline off (the pending pool still bounds silent connections).
func HelloTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return errors.New("ws: HelloTimeout must not be negative")
		}
		c.helloTimeout = d
		return nil
	}
}

// IdleTimeout bounds how long a client may hold its slot doing nothing: no command while nothing
// is pushed to it, no pong to the pings sent every half of it while something is, or one send
// it does not read. The session is then closed (1008). 0 turns it off.
func IdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return errors.New("ws: IdleTimeout must not be negative")
		}
		c.idleTimeout = d
		return nil
	}
}

// DefaultSessionConfig sets the interval and retention a session starts with before its HELLO
// asks for others (defaults: 1 s and 120 s). The protocol's limits apply.
func DefaultSessionConfig(interval, retention time.Duration) Option {
	return func(c *config) error {
		if interval < MinInterval || retention <= 0 || retention > MaxRetention {
			return errors.New("ws: DefaultSessionConfig needs interval >= 500ms and 0 < retention <= 120s")
		}
		c.defaultInterval, c.defaultRetention = interval, retention
		return nil
	}
}

// withClock replaces the clock that ages queued messages (tests).
func withClock(now func() time.Time) Option {
	return func(c *config) error { c.clock = now; return nil }
}
