"""Call applications (not built yet): ring groups, queues, IVRs, time conditions, conferences,
voicemail."""
