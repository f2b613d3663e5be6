"""Mail and webhook messages when runs end, champions change or drift alerts fire."""
