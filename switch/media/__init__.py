"""Media (not built yet): RTP/RTCP parse and build, port allocation, the asyncio relay, G.711,
mixing, tone and DTMF detection.  Until then SDP passes through the B2BUA unchanged and media
flows directly between the endpoints."""
