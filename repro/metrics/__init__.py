"""The community's metrics: per-word perplexity, coco-caption's caption metrics (with its PTB
tokenizer) and BLEU as multi-bleu and sacreBLEU compute it."""
