'use strict'
// Reads introspection data the way the libp2p observer UI does, with the observer-toolkit's own data
// layer (its `data/` and `proto/` packages, found through NODE_PATH), and reports what it saw.
//
//   node read_with_observer.js INPUT.json
//
// INPUT.json: {"sources": [{"name": "...", "kind": "file" | "frames", "path": "..."}]}
//   file:   a capture file (.mock / .libp2p.trace), loaded as the UI's "Upload a file" does (parseImport)
//   frames: WebSocket messages of a live session, each stored as u32 LE length + the message; every
//           message goes through a BufferList and parseBufferList, as the UI's live source does
//
// Prints one JSON object: per source, the messages the observer decoded by kind, what every selector
// the widgets use returned in total, and each failure (a selector that threw, data a widget cannot
// show). The Python test (tests/test_observer_reads_our_output.py) asserts on it.

const fs = require('fs')
const { BufferList } = require('bl')
const data = require('@libp2p/observer-data')
const { deserializeBinary } = require('@libp2p/observer-proto')

// The events table has a renderer for these property types only; any other type makes it throw.
const RENDERED_PROPERTY_TYPES = ['STRING', 'NUMBER', 'TIME', 'PEERID', 'JSON']
const MAX_LISTED_FAILURES = 40

function newReport() {
  return {
    decoded: { runtime: 0, state: 0, event: 0, response: 0, notice: 0, empty: 0 },
    failures: [],
    failureCount: 0,
    consoleErrors: [],
    leftoverBytes: 0,
    undeclaredProperties: [],
    seen: {
      selectorCalls: 0,
      connections: 0,
      connectionsWithoutStreams: 0,
      missingClosedConnections: 0,
      streams: 0,
      dhtPeers: 0,
      dhtQueries: 0,
      events: 0,
      hiddenEvents: 0,
      hiddenEventsAtLateStates: 0,
      eventTypes: 0,
    },
  }
}

// A deserializer that counts each decoded ServerMessage by its payload, then hands it back unchanged.
function countingDeserializer(report) {
  return bin => {
    const message = deserializeBinary(bin)
    const kind = ['runtime', 'state', 'event', 'response', 'notice'].find(k => {
      const getter = 'get' + k[0].toUpperCase() + k.slice(1)
      return message[getter]()
    })
    report.decoded[kind || 'empty'] += 1
    return message
  }
}

function fail(report, where, what) {
  report.failureCount += 1
  if (report.failures.length < MAX_LISTED_FAILURES) report.failures.push(`${where}: ${what}`)
}

// Call a selector as a widget would; a throw is recorded, never propagated.
function call(report, where, fn) {
  report.seen.selectorCalls += 1
  try {
    return fn()
  } catch (err) {
    fail(report, where, `threw ${err && err.stack ? err.stack.split('\n').slice(0, 2).join(' | ') : err}`)
    return undefined
  }
}

function loadFile(path, report) {
  return data.parseImport(fs.readFileSync(path), countingDeserializer(report))
}

function loadFrames(path, report) {
  const raw = fs.readFileSync(path)
  const all = { states: [], events: [], runtime: null, responses: [], notices: [] }
  const bl = new BufferList()
  let at = 0
  while (at + 4 <= raw.length) {
    const size = raw.readUInt32LE(at)
    const frame = raw.slice(at + 4, at + 4 + size)
    at += 4 + size
    // The live source drops each message's 4-byte protocol version, then parses what is complete.
    bl.append(frame.slice(4))
    const got = data.parseBufferList(bl, countingDeserializer(report))
    all.states.push(...got.states)
    all.events.push(...got.events)
    all.responses.push(...got.responses)
    all.notices.push(...got.notices)
    if (got.runtime) all.runtime = got.runtime
  }
  if (at !== raw.length) fail(report, 'frames file', `${raw.length - at} trailing bytes`)
  report.leftoverBytes = bl.length
  return all
}

// The connections table's columns, for one connection in one state.
function connectionColumns(report, where, conn, state) {
  call(report, `${where} peer/id`, () => `${conn.getPeerId()}_${conn.getId()}` && data.getConnectionId(conn))
  for (const dir of ['in', 'out']) {
    for (const type of ['bytes', 'packets', 'instBw']) {
      call(report, `${where} getConnectionTraffic(${dir},${type})`, () =>
        data.getConnectionTraffic(conn, dir, type)
      )
    }
  }
  call(report, `${where} getConnectionAge`, () => data.getConnectionAge(conn, state))
  call(report, `${where} getConnectionTimeClosed`, () => data.getConnectionTimeClosed(conn, state))
  call(report, `${where} timeline`, () => conn.getTimeline().getOpenTs() + conn.getTimeline().getCloseTs())
  const streams = call(report, `${where} streams count`, () => conn.getStreams().getStreamsList().length)
  if (streams === 0) report.seen.connectionsWithoutStreams += 1
  if (data.statusNames[conn.getStatus()] === undefined) fail(report, where, `unknown status ${conn.getStatus()}`)
}

// The streams table's columns (and the connections table's streams subtable), for one stream.
function streamColumns(report, where, stream, conn, state) {
  report.seen.streams += 1
  call(report, `${where} row key`, () => conn.getPeerId() + ':' + stream.getId().toString())
  for (const dir of ['in', 'out']) {
    for (const type of ['bytes', 'instBw']) {
      call(report, `${where} getStreamTraffic(${dir},${type})`, () => data.getStreamTraffic(stream, dir, type))
    }
  }
  call(report, `${where} getStreamAge`, () => data.getStreamAge(stream, state))
  call(report, `${where} getStreamTimeClosed`, () => data.getStreamTimeClosed(stream, state))
  call(report, `${where} timeline`, () => stream.getTimeline().getOpenTs())
  call(report, `${where} protocol`, () => stream.getProtocol())
  if (data.statusNames[stream.getStatus()] === undefined) fail(report, where, `unknown status ${stream.getStatus()}`)
}

function dhtWidgets(report, where, state, states, events, runtime) {
  const ts = data.getStateTime(state)
  call(report, `${where} getDhtStatus`, () => data.getDhtStatus(state))
  const buckets = call(report, `${where} getAllDhtBuckets`, () => data.getAllDhtBuckets(state)) || []
  for (const bucket of buckets) {
    const cpl = call(report, `${where} bucket cpl`, () => bucket.getCpl())
    call(report, `${where} getDhtPeersInBucket`, () => data.getDhtPeersInBucket(bucket, state))
    call(report, `${where} candidates`, () =>
      data
        .getDhtBucket(cpl, state)
        .getPeersList()
        .filter(p => data.dhtStatusNames[p.getStatus()] === 'CANDIDATE')
        .map(p => [p.getPeerId(), p.getAgeInBucket()])
    )
  }
  const peers = call(report, `${where} getDhtPeers`, () => data.getDhtPeers(state)) || []
  report.seen.dhtPeers += peers.length
  for (const peer of peers) {
    if (data.dhtStatusNames[peer.getStatus()] === undefined) {
      fail(report, where, `DHT peer with unknown status ${peer.getStatus()}`)
    }
    if (runtime) {
      call(report, `${where} getKademliaDistance`, () =>
        data.getKademliaDistance(peer.getPeerId(), runtime.getPeerId())
      )
    }
  }
  for (const status of ['present', 'ACTIVE', 'MISSING', 'REJECTED', 'CANDIDATE']) {
    call(report, `${where} getDhtPeers(${status})`, () => data.getDhtPeers(state, status))
  }
  // The buckets widget: queries up to this state, grouped under every DHT peer they touched.
  const byPeer = {}
  for (const peer of peers) byPeer[peer.getPeerId()] = { INBOUND: [], OUTBOUND: [] }
  const queries = call(report, `${where} getDhtQueries(toTs)`, () => data.getDhtQueries(events, { toTs: ts })) || []
  for (const query of queries) {
    call(report, `${where} query peers`, () => {
      for (const peerId of query.peerIds) {
        if (byPeer[peerId]) byPeer[peerId][query.direction].push(query)
      }
    })
    call(report, `${where} getDhtQueryTimes`, () => data.getDhtQueryTimes(query))
  }
  call(report, `${where} getDhtQueries(state)`, () => data.getDhtQueries(events, { state, states }))
}

// The events table shows events up to instant_ts + 1.5 x snapshot_duration_ms of the current state.
// Count the events it hides until the next State. When snapshot_duration_ms is the period the State
// covers, that happens only when the next State is late (its gap more than 1.5 x the previous one):
// any other hidden event is a failure.
function eventVisibility(report, states, events) {
  const times = states.map(s => [Number(s.getInstantTs()), s.getSnapshotDurationMs()])
  for (const event of events) {
    const ts = Number(event.getTs())
    const k = times.findIndex(([t], i) => t < ts && i + 1 < times.length && ts <= times[i + 1][0])
    if (k < 0) continue
    const [instant, duration] = times[k]
    if (ts <= instant + 1.5 * duration) continue
    report.seen.hiddenEvents += 1
    const nextGap = times[k + 1][0] - instant
    const previousGap = k > 0 ? instant - times[k - 1][0] : Infinity
    if (nextGap > 1.5 * previousGap) report.seen.hiddenEventsAtLateStates += 1
    else fail(report, `event at ${ts}`, `hidden until the next State by state ${instant} (snapshot_duration_ms ${duration})`)
  }
}

function eventsTable(report, runtime, events) {
  const declared = {}
  const types = runtime ? call(report, 'getRuntimeEventTypes', () => data.getRuntimeEventTypes(runtime)) || [] : []
  call(report, 'getRuntimeEventProperties', () => data.getRuntimeEventProperties({ runtime }))
  for (const { name, properties } of types) {
    declared[name] = properties
    for (const prop of properties) {
      if (!RENDERED_PROPERTY_TYPES.includes(prop.type)) {
        fail(report, `event type ${name}`, `property ${prop.name} has type ${prop.type}, which no column renders`)
      }
    }
  }
  report.seen.eventTypes = types.length
  for (const event of events) {
    report.seen.events += 1
    const name = call(report, 'getEventType', () => data.getEventType(event))
    const content = call(report, `${name} content`, () => JSON.parse(event.getContent()))
    if (content === null || typeof content !== 'object' || Array.isArray(content)) {
      fail(report, `${name} event`, 'content is not a JSON object')
      continue
    }
    const own = event.getType().getPropertyTypesList()
    const props =
      declared[name] ||
      (own.length ? call(report, 'getEventTypeWithProperties', () => data.getEventTypeWithProperties({ eventType: event.getType() })) : null)
    if (!props) {
      fail(report, `${name} event`, 'type neither in the Runtime nor described by the event')
      continue
    }
    const names = new Set(props.map(p => p.name))
    // Not a crash, but data no column shows: the observer's own samples have some; ours must have none.
    for (const key of Object.keys(content)) {
      if (!names.has(key) && !report.undeclaredProperties.includes(`${name}.${key}`)) {
        report.undeclaredProperties.push(`${name}.${key}`)
      }
    }
    for (const prop of props) {
      const value = content[prop.name]
      if (prop.hasMultiple && value !== undefined && !Array.isArray(value)) {
        fail(report, `${name} event`, `property "${prop.name}" should be a list`)
      }
    }
  }
}

function readAll(messages, report) {
  const { states, events, runtime } = messages
  if (!runtime) fail(report, 'runtime', 'no Runtime decoded')
  call(report, 'getLatestState', () => data.getLatestState(states))
  call(report, 'getStateRangeTimes', () => data.getStateRangeTimes(states))
  call(report, 'getAllConnections', () => data.getAllConnections(states))
  call(report, 'getAllConnections(latest)', () => data.getAllConnections(states, { latest: true }))
  states.forEach((state, i) => {
    const where = `state ${i}`
    const ts = call(report, `${where} getStateTime`, () => data.getStateTime(state))
    call(report, `${where} getSubsystems`, () => data.getSubsystems(state))
    call(report, `${where} getPreviousStateTime`, () => data.getPreviousStateTime(i, states))
    call(report, `${where} getStateIndex`, () => data.getStateIndex(states, ts))
    const conns = call(report, `${where} getConnections`, () => data.getConnections(state)) || []
    report.seen.connections += conns.length
    conns.forEach((conn, j) => {
      connectionColumns(report, `${where} connection ${j}`, conn, state)
      const streams = call(report, `${where} connection ${j} getStreams`, () => data.getStreams(conn)) || []
      streams.forEach((stream, n) => streamColumns(report, `${where} connection ${j} stream ${n}`, stream, conn, state))
    })
    const missing = call(report, `${where} getMissingClosedConnections`, () =>
      data.getMissingClosedConnections(state, states)
    ) || []
    report.seen.missingClosedConnections += missing.length
    missing.forEach((conn, j) => connectionColumns(report, `${where} vanished connection ${j}`, conn, state))
    const rows = call(report, `${where} getAllStreamsAtTime`, () => data.getAllStreamsAtTime(state)) || []
    rows.forEach(({ connection, stream }, n) => streamColumns(report, `${where} streams row ${n}`, stream, connection, state))
    call(report, `${where} getDht`, () => data.getDht(state))
    dhtWidgets(report, where, state, states, events, runtime)
  })
  report.seen.dhtQueries = (call(report, 'getDhtQueries', () => data.getDhtQueries(events)) || []).length
  eventsTable(report, runtime, events)
  eventVisibility(report, states, events)
}

function main() {
  const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const out = {}
  for (const source of input.sources) {
    const report = newReport()
    const originalError = console.error
    console.error = (...args) => report.consoleErrors.push(args.join(' '))
    try {
      const messages = source.kind === 'frames' ? loadFrames(source.path, report) : loadFile(source.path, report)
      readAll(messages, report)
    } catch (err) {
      fail(report, 'loading', `threw ${err && err.stack ? err.stack : err}`)
    } finally {
      console.error = originalError
    }
    out[source.name] = report
  }
  process.stdout.write(JSON.stringify(out))
}

main()
