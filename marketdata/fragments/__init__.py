"""HTML fragments of the live pages, built from the feed's group messages. No Django import."""
