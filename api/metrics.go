package api

// PathMetrics is GET /v1/sys/metrics: the node's Prometheus metrics in the
// text format. It needs a token with the metrics capability unless the
// node runs with unauthenticated_metrics.
const PathMetrics = "/v1/sys/metrics"
