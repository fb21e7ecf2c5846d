class Remote
  def self.use(total:, note:)
    puts "rb> total=#{total} note=#{note}"
    Digdag.env.store(doubled: total * 2)
  end
end
