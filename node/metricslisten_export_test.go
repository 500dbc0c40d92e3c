package node

// MetricsListenAddr exposes metricsListenAddr to the external tests.
var MetricsListenAddr = metricsListenAddr
