"""Operations heads share: box IoU and NMS (``boxes``), resampling dense outputs to the frame (``dense``),
and the loss functions of the built-in heads' training (``losses``: focal, Dice, GIoU)."""
