"""Language-model corpora: PTB, WikiText-2/-103 (tokens and raw), any train/valid/test text, and the
embedded agreement-grammar sample, read as streams by one datamodule."""
