"""Operations heads share: box IoU and NMS (``boxes``), resampling dense outputs to the frame (``dense``)."""
