"""Operations heads share: box IoU and NMS (``boxes``), resampling dense outputs to the frame (``dense``),
the loss functions of the built-in heads' training (``losses``: focal, Dice, GIoU), and anchors with their
box coder and matching (``anchors``: RetinaNet, SSD)."""
