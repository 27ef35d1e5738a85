"""Caption datasets: Flickr8k/30k and COCO (Karpathy JSON or the official files) with the embedded
shapes sample, and video captions (MSVD with the embedded motion sample), with their feature caches."""
