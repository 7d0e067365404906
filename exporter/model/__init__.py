"""What the layers above share: one State as plain views (``snapshot``), bounded label values
(``labels``), multiaddr reading (``multiaddr``), and the histograms and metric families mappers
write into (``histogram``, ``families``). Depends on the protocol layer only."""
