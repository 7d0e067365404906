module github.com/libp2p-exporter/libp2p-exporter/producers/go

go 1.26.6

require (
	github.com/gorilla/websocket v1.5.3
	github.com/ipfs/go-log/v2 v2.9.2
	go.uber.org/zap v1.28.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/mattn/go-isatty v0.0.22 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
