"""Your own traffic: the routing log of answered calls (with shadow answers), scoring logged answers, and exports
to routing data (``export-pairs``) and fine-tuning data (``export-sft``)."""
