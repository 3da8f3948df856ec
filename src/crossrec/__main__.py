from crossrec.cli import main

main()
