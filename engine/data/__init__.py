"""Which files of a workspace are learnt from (the scan and its read policy), and the training windows cut from them."""
