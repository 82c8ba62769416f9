"""Continue-train pretrained SSL models (VICReg, SwAV, SimSiam) with E2MC added to their loss."""
