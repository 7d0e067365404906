package introspect

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peerstore"
	"google.golang.org/protobuf/proto"

	"github.com/libp2p-exporter/libp2p-exporter/producers/go/pb"
)

// The peerstore extension's fixed layouts (proto/introspection.proto, PeerStore), upper bounds.
var (
	addrsBounds   = []float64{0, 1, 2, 4, 8, 16, 32, 64}
	latencyBounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

const (
	topNames = 64 // protocol and agent entries kept; the rest is summed into *_other
	// agentKey is where go-libp2p's identify keeps the remote agent version.
	agentKey = "AgentVersion"
)

// peerstorePart aggregates the store into the extension message: counts only, no peer ids.
// It reads through methods that do not change the store (PeersWithKeys rather than PubKey,
// which would extract and store keys from ids).
func peerstorePart(ps peerstore.Peerstore) *pb.PeerStore {
	peers := ps.Peers()
	withKeys := map[string]bool{}
	for _, p := range ps.PeersWithKeys() {
		withKeys[string(p)] = true
	}
	cab, hasRecords := peerstore.GetCertifiedAddrBook(ps)
	var (
		nAddrs                               = make([]float64, 0, len(peers))
		addrsTotal, keys, records, withProto uint64
		latencies                            []float64
		latSum                               float64
		protocols                            = map[string]uint64{}
		agents                               = map[string]uint64{}
	)
	for _, p := range peers {
		n := len(ps.Addrs(p)) // unexpired addresses only
		nAddrs = append(nAddrs, float64(n))
		addrsTotal += uint64(n)
		if withKeys[string(p)] {
			keys++
		}
		if hasRecords && cab.GetPeerRecord(p) != nil {
			records++
		}
		if protos, err := ps.GetProtocols(p); err == nil && len(protos) > 0 {
			withProto++
			seen := map[string]bool{}
			for _, pr := range protos {
				name := capText(string(pr))
				if !seen[name] {
					seen[name] = true
					protocols[name]++
				}
			}
		}
		if l := ps.LatencyEWMA(p); l > 0 {
			s := l.Seconds()
			latencies = append(latencies, s)
			latSum += s
		}
		if v, err := ps.Get(p, agentKey); err == nil {
			if a, ok := v.(string); ok && a != "" {
				agents[capText(a)]++
			}
		}
	}
	addrsHist := histogram(addrsBounds, nAddrs)
	part := &pb.PeerStore{
		KnownPeers:            uint64(len(peers)),
		PeersWithAddrs:        proto.Uint64(uint64(len(peers)) - addrsHist[0]),
		PeersWithKeys:         proto.Uint64(keys),
		PeersWithProtocols:    proto.Uint64(withProto),
		AddrsPerPeer:          addrsHist,
		AddrsTotal:            addrsTotal,
		LatencyEwma:           histogram(latencyBounds, latencies),
		LatencyEwmaSumSeconds: latSum,
	}
	if hasRecords {
		part.PeersWithRecords = proto.Uint64(records)
	}
	part.Protocols, part.ProtocolsOther = top(protocols)
	part.Agents, part.AgentsOther = top(agents)
	// go-libp2p's memory peerstore has no peer limit and counts no evictions: max_peers,
	// max_records and evicted_peers stay unset.
	return part
}

// histogram counts values on bounds (inclusive upper bounds), plus one for the rest.
func histogram(bounds, values []float64) []uint64 {
	out := make([]uint64, len(bounds)+1)
	for _, v := range values {
		out[sort.SearchFloat64s(bounds, v)]++
	}
	return out
}

// top keeps the topNames largest counts (ties by name) and sums the rest.
func top(counts map[string]uint64) ([]*pb.PeerStore_NameCount, uint64) {
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
	})
	var out []*pb.PeerStore_NameCount
	var other uint64
	for i, n := range names {
		if i < topNames {
			out = append(out, &pb.PeerStore_NameCount{Name: n, Peers: counts[n]})
		} else {
			other += counts[n]
		}
	}
	return out, other
}

// peerstoreSampler recomputes the part only when the last one is old for its cost: a walk
// takes at most 1/budget of the time, every State for small stores, less often for large ones.
type peerstoreSampler struct {
	ps     peerstore.Peerstore
	budget float64

	mu   sync.Mutex
	last *pb.PeerStore
	at   time.Time
	cost time.Duration
}

func newPeerstoreSampler(ps peerstore.Peerstore) *peerstoreSampler {
	return &peerstoreSampler{ps: ps, budget: 20}
}

func (s *peerstoreSampler) sample() *pb.PeerStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.last == nil || now.Sub(s.at) >= time.Duration(float64(s.cost)*s.budget) {
		s.last = peerstorePart(s.ps)
		s.cost = time.Since(now)
		s.at = now
	}
	return proto.Clone(s.last).(*pb.PeerStore)
}
