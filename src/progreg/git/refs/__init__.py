"""References: loose and packed refs, reflogs, and writing and updating refs."""
